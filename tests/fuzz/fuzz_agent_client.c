/* Fuzz target for agent/client.c: whatever a hostile guest agent sends after a valid HELLO, while
 * a call is pending, an event handler is set and a stream with credit is open, must never crash,
 * leak or hang the host. Each input gets a fresh connection over a socketpair with the real I/O
 * thread; the input is written as the agent's bytes, then the agent hangs up, which ends the call.
 * Each input is also tried as what precedes the agent's HELLO in the handshake.
 *
 * Build and run with libFuzzer (from the source tree):
 *   clang -std=gnu11 -D_GNU_SOURCE -DPACKAGE_VERSION='"0.1.0"' -g -O1 \
 *       -fsanitize=fuzzer,address,undefined -I. -Icommon \
 *       agent/client.c agent/protocol.c agent/agent.c common/log.c common/util.c common/json-util.c \
 *       tests/fuzz/fuzz_agent_client.c $(pkg-config --cflags --libs jansson) -pthread -o fuzz_agent_client
 *   ./fuzz_agent_client -max_len=70000 -timeout=10 CORPUS_DIR
 * Without libFuzzer (any compiler, e.g. gcc with -fsanitize=address,undefined) add -DFUZZ_MAIN:
 *   ./fuzz_agent_client FILE...        replays inputs
 *   ./fuzz_agent_client --seeds DIR    writes a few valid conversations to start a corpus with */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "log.h"
#include "macro.h"

#define STREAM_OUT 1 /* the host granted credit: the agent may send DATA on it */
#define STREAM_IN 2  /* the agent may grant credit for it */
#define STREAM_CREDIT 4096
#define REQUEST_ID 1 /* the pending call's id on a fresh connection */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_event(_unused_ agent_t *a, json_t *event, void *userdata) {
        size_t *count = userdata;
        *count += json_object_size(event) > 0;
}

static void on_data(_unused_ agent_t *a, _unused_ uint32_t stream_id, const void *data, size_t len, _unused_ int error,
                    void *userdata) {
        size_t *bytes = userdata;
        *bytes += data ? len : 0;
}

static void on_disconnect(_unused_ agent_conn_t *c, _unused_ int error, void *userdata) {
        int *count = userdata;
        (*count)++;
}

typedef struct pending {
        agent_t *agent;
        int r;
} pending_t;

static void *call_main(void *userdata) {
        pending_t *p = userdata;
        json_t *result = NULL;
        char *message = NULL;
        p->r = agent_call(p->agent, "Ping", NULL, &result, &message);
        json_decref(result);
        free(message);
        return NULL;
}

static void send_all(int fd, const uint8_t *data, size_t size) {
        while (size > 0) {
                ssize_t n = send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        data += n;
                        size -= (size_t) n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        int k = poll(&p, 1, 5000);
                        if (k > 0 || (k < 0 && errno == EINTR))
                                continue;
                }
                return; /* the host hung up (a protocol error), or stopped reading: a bug the timeout shows */
        }
}

/* Reads what the host sent until its REQUEST: from then on the call is pending. */
static void wait_for_request(int fd) {
        agent_frame_reader_t reader = { 0 };
        for (;;) {
                agent_frame_header_t h;
                const uint8_t *payload;
                int r = agent_frame_reader_next(&reader, &h, &payload);
                if (r < 0)
                        abort();
                if (r > 0 && h.type == AGENT_FRAME_REQUEST)
                        break;
                if (r > 0)
                        continue;
                /* libFuzzer's -timeout alarm interrupts system calls every second. */
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int k = poll(&p, 1, 5000);
                if (k < 0 && errno == EINTR)
                        continue;
                uint8_t buf[4096];
                ssize_t n = k > 0 ? recv(fd, buf, sizeof buf, MSG_DONTWAIT) : -1;
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0 || agent_frame_reader_feed(&reader, buf, (size_t) n) < 0)
                        abort();
        }
        agent_frame_reader_free(&reader);
}

static void send_hello(int fd) {
        static const char hello[] = "{\"Version\":1,\"Agent\":\"fuzz\"}";
        size_t size;
        uint8_t *frame = agent_frame_build(AGENT_FRAME_HELLO, 0, 0, hello, strlen(hello), &size);
        send_all(fd, frame, size);
        free(frame);
}

/* The input as what precedes the agent's HELLO: the handshake skips it, or fails cleanly. */
static void fuzz_handshake(const uint8_t *data, size_t size) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        send_all(sv[1], data, size);
        send_hello(sv[1]);
        agent_conn_t *c = NULL;
        int r = agent_conn_new(sv[0], 100, &c);
        if (r < 0 && r != -EPROTO && r != -ETIMEDOUT)
                abort();
        agent_conn_unref(c);
        close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        log_set_level(LOG_EMERG);
        if (size <= 65536)
                fuzz_handshake(data, size);

        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        send_hello(sv[1]);
        agent_conn_t *c = NULL;
        if (agent_conn_new(sv[0], 5000, &c) < 0)
                abort();
        int disconnects = 0;
        size_t events = 0, bytes = 0;
        agent_conn_set_disconnect_handler(c, on_disconnect, &disconnects);
        agent_t *a = NULL;
        if (agent_conn_open(c, &a) < 0)
                abort();
        agent_set_event_handler(a, on_event, &events);
        if (agent_stream_open(a, STREAM_OUT, on_data, &bytes) < 0 ||
            agent_stream_credit(a, STREAM_OUT, STREAM_CREDIT) < 0 || agent_stream_open(a, STREAM_IN, NULL, NULL) < 0)
                abort();
        pending_t pending = { .agent = a };
        pthread_t t;
        if (pthread_create(&t, NULL, call_main, &pending) != 0)
                abort();
        wait_for_request(sv[1]);

        send_all(sv[1], data, size);
        /* Whatever credit the input granted can be used while the connection lives. */
        (void) agent_stream_write(a, STREAM_IN, "stdin", 5, 0);
        shutdown(sv[1], SHUT_WR);
        pthread_join(t, NULL);
        agent_close(a); /* no callback runs after this */
        agent_conn_unref(c);
        if (pending.r > 0 || bytes > STREAM_CREDIT || disconnects > 1)
                abort();
        close(sv[1]);
        return 0;
}

#ifdef FUZZ_MAIN
static void append_frame(FILE *f, agent_frame_type_t type, uint32_t stream, uint32_t id, const char *payload,
                         size_t len) {
        size_t size;
        uint8_t *frame = agent_frame_build(type, stream, id, payload, len, &size);
        fwrite(frame, 1, size, f);
        free(frame);
}

static int write_seeds(const char *dir) {
        static const struct {
                const char *name;
                agent_frame_type_t type;
                uint32_t stream, id;
                const char *payload;
        } seeds[] = {
                { "result", AGENT_FRAME_RESPONSE, 0, REQUEST_ID, "{\"Result\":{\"Version\":1,\"Agent\":\"x\"}}" },
                { "error", AGENT_FRAME_RESPONSE, 0, REQUEST_ID, "{\"Error\":{\"Errno\":16,\"Message\":\"busy\"}}" },
                { "event", AGENT_FRAME_EVENT, 0, 0, "{\"Type\":\"process-exit\",\"ExitCode\":0}" },
                { "data", AGENT_FRAME_DATA, STREAM_OUT, 0, "hello world" },
                { "eof", AGENT_FRAME_EOF, STREAM_OUT, 0, "" },
                { "credit", AGENT_FRAME_CREDIT, STREAM_IN, 0, "\0\0\0\x10" },
                { "hello", AGENT_FRAME_HELLO, 0, 0, "{\"Version\":1}" },
        };
        for (size_t i = 0; i < ELEMENTSOF(seeds); i++) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
                FILE *f = fopen(path, "we");
                if (!f)
                        return 1;
                size_t len = seeds[i].type == AGENT_FRAME_CREDIT ? 4 : strlen(seeds[i].payload);
                append_frame(f, seeds[i].type, seeds[i].stream, seeds[i].id, seeds[i].payload, len);
                fclose(f);
        }
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
                return write_seeds(argv[2]);
        for (int i = 1; i < argc; i++) {
                FILE *f = fopen(argv[i], "re");
                if (!f) {
                        perror(argv[i]);
                        return 1;
                }
                uint8_t *buf = malloc(AGENT_FRAME_MAX_PAYLOAD * 2);
                size_t n = fread(buf, 1, AGENT_FRAME_MAX_PAYLOAD * 2, f);
                fclose(f);
                LLVMFuzzerTestOneInput(buf, n);
                free(buf);
        }
        return 0;
}
#endif
