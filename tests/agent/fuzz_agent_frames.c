/* libFuzzer target for the guest agent's input path: the bytes a hostile or broken host writes on
 * the agent's channel go through the frame decoder, the session (HELLO, resynchronisation after a
 * protocol error, stdio frames and their credit rule) and the RPC layer (request parsing and every
 * method's parameter validation into typed specs). The guest operations are stubs that answer at
 * once, except WaitProcess, whose calls are held and answered after a later HELLO (so answers to a
 * replaced connection are exercised). Nothing forks or mounts.
 *
 * Input: byte 0 picks the transport (bit 0: a socket that closes on protocol errors, else a port
 * that resynchronises) and how the rest is cut into reads (bits 1-7); the rest is the byte stream.
 * Every frame the agent sends must decode, and every control payload must be a JSON object.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -include build/config.h -I. -Icommon
 *        tests/agent/fuzz_agent_frames.c agent/guest/session.c agent/guest/rpc.c agent/guest/spec.c
 *        agent/guest/log-console.c agent/protocol.c common/util.c common/json-util.c -ljansson
 * Seeds: tests/agent/corpus/agent_frames (python3 tests/agent/make_fuzz_corpus.py regenerates them). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/guest/rpc.h"
#include "agent/guest/session.h"
#include "log.h"
#include "agent/protocol.h"

#define HELD_MAX 8

typedef struct fuzz_state {
        session_t *session;
        bool closable;
        bool closed;
        rpc_call_t *held[HELD_MAX];
        size_t n_held;
        uint32_t stdin_credit[4]; /* streams 1-3 are stdin streams of a make-believe process */
} fuzz_state_t;

static int t_send(void *ud, uint8_t *frame, size_t size) {
        agent_frame_header_t h;
        if (size < AGENT_FRAME_HEADER_SIZE || agent_frame_header_decode(frame, &h) < 0 ||
            h.length != size - AGENT_FRAME_HEADER_SIZE)
                abort(); /* the agent must only ever send well-formed frames */
        if (h.type == AGENT_FRAME_HELLO || h.type == AGENT_FRAME_RESPONSE || h.type == AGENT_FRAME_EVENT) {
                json_t *j = json_loadb((const char *) frame + AGENT_FRAME_HEADER_SIZE, h.length, 0, NULL);
                if (!json_is_object(j))
                        abort();
                if (h.type == AGENT_FRAME_RESPONSE && !json_object_get(j, "Result") && !json_object_get(j, "Error"))
                        abort();
                json_decref(j);
        }
        free(frame);
        return 0;
}

static size_t t_queued(void *ud) {
        return 0;
}

static void t_discard(void *ud) {
}

static void t_close(void *ud) {
        fuzz_state_t *f = ud;
        f->closed = true;
}

static const session_transport_t port_transport = { t_send, t_queued, t_discard, NULL };
static const session_transport_t socket_transport = { t_send, t_queued, t_discard, t_close };

static void answer(rpc_call_t *call) {
        rpc_reply(call, NULL);
}

static void s_create(void *ud, rpc_call_t *call, container_spec_t *spec) {
        container_spec_free(spec);
        rpc_reply(call,
                  json_pack("{s:i, s:{s:i, s:i, s:i}}", "Pid", 1, "Streams", "Stdin", 1, "Stdout", 2, "Stderr", 3));
}

static void s_start(void *ud, rpc_call_t *call, const char *cid) {
        rpc_fail(call, -ENOENT, "container %s not found", cid);
}

static void s_exec(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, process_spec_t *spec) {
        process_spec_done(spec);
        free(spec);
        answer(call);
}

static void s_wait(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int64_t timeout_ms) {
        fuzz_state_t *f = ud;
        if (f->n_held < HELD_MAX)
                f->held[f->n_held++] = call;
        else
                rpc_fail(call, -ETIMEDOUT, "process %s did not exit in time", exec_id);
}

static void s_signal(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, int sig, bool all) {
        answer(call);
}

static void s_winsize(void *ud, rpc_call_t *call, const char *cid, const char *exec_id, unsigned h, unsigned w) {
        rpc_fail(call, -ENOTTY, "no terminal");
}

static void s_pause(void *ud, rpc_call_t *call, const char *cid, bool pause) {
        answer(call);
}

static void s_cid(void *ud, rpc_call_t *call, const char *cid) {
        answer(call);
}

static void s_update(void *ud, rpc_call_t *call, const char *cid, resources_spec_t *res) {
        resources_spec_done(res);
        free(res);
        answer(call);
}

static void s_ps(void *ud, rpc_call_t *call, const char *cid, const ps_spec_t *ps) {
        if (ps->n_columns == 0 || ps->n_columns > PS_COLUMNS_MAX)
                abort();
        answer(call);
}

static void s_list(void *ud, rpc_call_t *call) {
        rpc_reply(call, json_pack("{s:[]}", "Containers"));
}

static int s_data(void *ud, uint32_t stream, const uint8_t *data, size_t len) {
        fuzz_state_t *f = ud;
        if (stream == 0 || stream > 3)
                return 0;
        if (len > f->stdin_credit[stream])
                return -EPROTO;
        f->stdin_credit[stream] -= (uint32_t) len;
        return 0;
}

static void s_eof(void *ud, uint32_t stream) {
}

static void s_credit(void *ud, uint32_t stream, uint32_t bytes) {
}

static void s_reset(void *ud) {
        fuzz_state_t *f = ud;
        memset(f->stdin_credit, 0, sizeof f->stdin_credit);
}

static void s_connected(void *ud) {
        fuzz_state_t *f = ud;
        for (uint32_t s = 1; s <= 3; s++) {
                f->stdin_credit[s] = 65536;
                session_send_credit(f->session, s, 65536);
        }
        /* Answer what an earlier connection asked: those answers must be dropped, not sent. */
        for (size_t i = 0; i < f->n_held; i++)
                rpc_reply(f->held[i], json_pack("{s:i}", "ExitCode", 0));
        f->n_held = 0;
        session_send_data(f->session, 2, "out", 3);
        session_send_eof(f->session, 2);
}

static void s_output_ready(void *ud) {
}

static const guest_ops_t ops = {
        .create_container = s_create,
        .start_container = s_start,
        .exec_process = s_exec,
        .wait_process = s_wait,
        .signal_process = s_signal,
        .winsize_process = s_winsize,
        .pause_container = s_pause,
        .stats_container = s_cid,
        .update_container = s_update,
        .list_processes = s_ps,
        .remove_container = s_cid,
        .status_container = s_cid,
        .list_containers = s_list,
        .shutdown = s_list,
        .stream_data = s_data,
        .stream_eof = s_eof,
        .stream_credit = s_credit,
        .connection_reset = s_reset,
        .connected = s_connected,
        .output_ready = s_output_ready,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        log_set_level(-1);
        fuzz_state_t f = { .closable = data[0] & 1 };
        if (session_new(&ops, &f, &f.session) < 0)
                return 0;
        session_set_transport(f.session, f.closable ? &socket_transport : &port_transport, &f);
        size_t chunk = 1 + (size_t) (data[0] >> 1) * 37;
        data++;
        size--;
        while (size > 0) {
                size_t n = size < chunk ? size : chunk;
                session_receive(f.session, data, n);
                if (f.closed) {
                        /* A socket transport reconnects: the session sees a new connection. */
                        f.closed = false;
                        session_disconnected(f.session);
                }
                data += n;
                size -= n;
        }
        session_disconnected(f.session);
        for (size_t i = 0; i < f.n_held; i++)
                rpc_fail(f.held[i], -ESHUTDOWN, "the agent stops");
        session_free(f.session);
        return 0;
}
