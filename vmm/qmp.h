/* A client of QEMU's monitor protocol (QMP): one JSON object per line over the monitor's Unix socket.
 *
 * The connection goes through an explicit handshake: QEMU greets ({"QMP":{...}}), the client sends
 * qmp_capabilities, and once that returns the client is ready. Every command carries an "id"; replies
 * are matched through a table of pending commands, so they may arrive in any order and interleaved
 * with events.
 *
 * Threads: the client is driven by a libevent event_base that its owner runs on one thread (the
 * loop thread; libevent must have been told to use pthreads). Reading, parsing, completing commands
 * and dispatching events happen there. A command is written by the thread that issues it. qmp_call
 * blocks its thread until the reply and therefore must not run on the loop thread (-EDEADLK);
 * callbacks use qmp_call_async.
 *
 * Errors: a command that QEMU answered with {"error":{"class","desc"}} fails with -EREMOTEIO and its
 * class and desc. Every other failure is about the transport: -ETIMEDOUT (no reply in time),
 * -ECONNRESET (the monitor closed), -EPROTO (the monitor sent something that is not QMP), -ENOTCONN
 * (the client was already disconnected), -ECANCELED (the owner closed the client).
 *
 * Disconnect: when the monitor goes away or speaks garbage, every pending command fails, the state
 * becomes QMP_STATE_DISCONNECTED and one synthetic SHUTDOWN event is raised with data
 * {"guest":false,"reason":"disconnected","synthetic":true}; nothing is raised after that. */
#pragma once

#include <event2/event.h>
#include <jansson.h>

typedef struct qmp_client qmp_client_t;

typedef enum qmp_state {
        QMP_STATE_GREETING,     /* connected, waiting for QEMU's {"QMP":{...}} */
        QMP_STATE_CAPABILITIES, /* qmp_capabilities sent, waiting for its return */
        QMP_STATE_READY,        /* commands flow */
        QMP_STATE_DISCONNECTED, /* the monitor is gone; every command fails */
        _QMP_STATE_MAX,
} qmp_state_t;

/* The longest line accepted from the monitor; a longer one is a protocol error. */
#define QMP_MESSAGE_MAX (8u << 20)

typedef struct qmp_error {
        char class_name[64]; /* e.g. "GenericError", "CommandNotFound" */
        char desc[1024];     /* QEMU's human-readable description, truncated */
} qmp_error_t;

/* An event from QEMU (or the synthetic SHUTDOWN); data is an object, borrowed for the call. Runs on
 * the loop thread with a reference to q held. */
typedef void (*qmp_event_cb)(qmp_client_t *q, const char *event, json_t *data, void *userdata);

/* The end of one command: r == 0 with result (borrowed; any JSON type), r == -EREMOTEIO with error,
 * or a negative transport errno (result and error NULL). Runs on the loop thread, except for
 * -ECANCELED which runs on the thread that closes the client. */
typedef void (*qmp_reply_cb)(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata);

const char *qmp_state_to_string(qmp_state_t state);

/* Takes over fd (a connected stream socket to a QMP monitor, even on failure) and starts the
 * handshake on loop. on_event may be NULL. */
int qmp_client_new(struct event_base *loop, int fd, qmp_event_cb on_event, void *userdata, qmp_client_t **ret);
/* Connects to the monitor at socket_path (any length) and waits up to timeout_ms for the handshake
 * to finish. -ENOENT/-ECONNREFUSED when nothing listens there. Not on the loop thread. */
int qmp_client_connect(struct event_base *loop, const char *socket_path, int timeout_ms, qmp_event_cb on_event,
                       void *userdata, qmp_client_t **ret);
/* Waits until the handshake is done: 0 when ready, the disconnect error, or -ETIMEDOUT. */
int qmp_client_wait_ready(qmp_client_t *q, int timeout_ms);
qmp_state_t qmp_client_get_state(qmp_client_t *q);
/* QEMU's version from the greeting as major*10000 + minor*100 + micro, or 0 before the greeting. */
unsigned qmp_client_get_version(qmp_client_t *q);

/* Sends a command; args (may be NULL) is consumed. Returns 0 when cb will be called exactly once,
 * or a negative errno (cb is never called). Commands issued before the handshake is done wait for
 * it. Any thread. */
int qmp_call_async(qmp_client_t *q, const char *command, json_t *args, qmp_reply_cb cb, void *userdata);
/* Sends a command and waits up to timeout_ms for its reply; args (may be NULL) is consumed. On
 * success *ret_result (may be NULL) gets a new reference; on -EREMOTEIO *ret_error (may be NULL)
 * gets QEMU's error. Not on the loop thread. */
int qmp_call_full(qmp_client_t *q, const char *command, json_t *args, int timeout_ms, json_t **ret_result,
                  qmp_error_t *ret_error);
/* qmp_call_full without the error details (they are logged at debug level). */
int qmp_call(qmp_client_t *q, const char *command, json_t *args, json_t **ret_result, int timeout_ms);

qmp_client_t *qmp_client_ref(qmp_client_t *q);
void qmp_client_unref(qmp_client_t *q);
/* Stops the client: pending commands fail with -ECANCELED, no event is delivered after it returns,
 * the socket is closed, and the caller's reference is dropped. Any thread, also inside a callback.
 * Accepts NULL. */
void qmp_client_close(qmp_client_t *q);
