/* The agent's RPC layer: a REQUEST payload becomes a validated call on the guest's operations
 * (docs/agent-protocol.md has the table). This file knows every method, its parameters and their
 * checks; it performs no system call, so the fuzzer runs it with stub operations.
 *
 * Every operation receives an rpc_call_t it owns and must finish exactly once, now or later, with
 * rpc_reply() or rpc_fail(). A call whose connection has since been replaced can still be finished:
 * the answer is dropped. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "spec.h"

typedef struct session session_t;
typedef struct rpc_call rpc_call_t;

typedef struct guest_ops {
        /* RPCs; strings are borrowed for the duration of the call, specs are owned by the callee. */
        void (*create_container)(void *ud, rpc_call_t *call, container_spec_t *spec);
        void (*start_container)(void *ud, rpc_call_t *call, const char *cid);
        void (*exec_process)(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, process_spec_t *spec);
        void (*wait_process)(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int64_t timeout_ms);
        void (*signal_process)(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int sig, bool all);
        void (*winsize_process)(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, unsigned height,
                                unsigned width);
        void (*pause_container)(void *ud, rpc_call_t *call, const char *cid, bool pause);
        void (*stats_container)(void *ud, rpc_call_t *call, const char *cid);
        void (*update_container)(void *ud, rpc_call_t *call, const char *cid, resources_spec_t *resources);
        void (*list_processes)(void *ud, rpc_call_t *call, const char *cid, const ps_spec_t *ps);
        void (*remove_container)(void *ud, rpc_call_t *call, const char *cid);
        void (*status_container)(void *ud, rpc_call_t *call, const char *cid);
        void (*list_containers)(void *ud, rpc_call_t *call);
        void (*shutdown)(void *ud, rpc_call_t *call);

        /* Stdio frames from the host (see stdio.h); unknown streams are ignored by the callee.
         * stream_data returns a negative errno when the host broke the credit rules. */
        int (*stream_data)(void *ud, uint32_t stream, const uint8_t *data, size_t len);
        void (*stream_eof)(void *ud, uint32_t stream);
        void (*stream_credit)(void *ud, uint32_t stream, uint32_t bytes);
        /* A host connection ended or a new one started: credits of the old one are void. */
        void (*connection_reset)(void *ud);
        /* The host said HELLO: the connection is usable. */
        void (*connected)(void *ud);
        /* The transport has room again after being congested. */
        void (*output_ready)(void *ud);
} guest_ops_t;

/* Parses one REQUEST payload and starts the call; answers bad requests itself. */
void rpc_dispatch(session_t *s, const guest_ops_t *ops, void *ud, uint32_t id, const uint8_t *payload, size_t len);

/* Answers {"Result": result} (consumed; NULL means {}) and frees the call. */
void rpc_reply(rpc_call_t *call, json_t *result);
/* Answers {"Error":{"Errno":-r,"Message":...}}, frees the call and returns r (negative errno). */
int rpc_fail(rpc_call_t *call, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* True when the call's connection has been replaced: its answer would be dropped. */
bool rpc_call_is_stale(const rpc_call_t *call);
const char *rpc_call_method(const rpc_call_t *call);
