/* Host side of the guest agent: a request/response channel plus asynchronous guest events.
 *
 * Every operation inside the VM is one RPC named after the virtcontainers operation it serves
 * (CreateContainer, StartContainer, ExecProcess, WaitProcess, SignalProcess, ...; the list and
 * their parameters are in docs/agent-protocol.md). Parameters and results are JSON objects so the
 * same calls travel unchanged over the framed protocol to the real guest agent and into the
 * in-process mock. Events (a process exited, a container hit OOM) arrive on the handler set by
 * agent_set_event_handler, on a thread of the transport's own; the handler must not block. */
#pragma once

#include <jansson.h>

typedef struct agent agent_t;

/* Called for each guest event, e.g. {"Type":"process-exit","ContainerID":..,"ExecID":..,
 * "ExitCode":..}; the event is borrowed for the duration of the call. */
typedef void (*agent_event_cb)(agent_t *agent, json_t *event, void *userdata);

typedef struct agent_ops {
        /* Performs one RPC; params is borrowed. On success *ret_result holds a new reference (an object). On failure
         * returns negative errno (-ENOENT unknown container/process, -EEXIST duplicate, -EBUSY wrong
         * state, -EINVAL bad parameters, -ESHUTDOWN channel closed, -ETIMEDOUT) and, if ret_message
         * is set, a malloc'ed message from the guest. */
        int (*call)(agent_t *agent, const char *method, json_t *params, json_t **ret_result, char **ret_message);
        /* Closes the channel: pending and future calls fail with -ESHUTDOWN; no event is delivered
         * after close returns. Frees the object. */
        void (*close)(agent_t *agent);
        /* Makes pending and future calls fail with -ESHUTDOWN without freeing; callable from any
         * thread while another is inside call. */
        void (*cancel)(agent_t *agent);
        /* Sets on_event/userdata under the transport's lock, so that a delivery racing with it sees
         * either the old pair or the new one. */
        void (*set_event_handler)(agent_t *agent, agent_event_cb cb, void *userdata);
} agent_ops_t;

struct agent {
        const agent_ops_t *ops;
        agent_event_cb on_event;
        void *userdata;
};

/* Performs one RPC (see agent_ops.call); params (may be NULL) is consumed. */
int agent_call(agent_t *agent, const char *method, json_t *params, json_t **ret_result, char **ret_message);
/* Sets the event handler; call before the first RPC. */
void agent_set_event_handler(agent_t *agent, agent_event_cb cb, void *userdata);
/* Wakes a blocked call on this handle with -ESHUTDOWN; the handle still needs agent_close. */
void agent_cancel(agent_t *agent);
/* Closes and frees; accepts NULL. */
void agent_close(agent_t *agent);
