/* libFuzzer target for the QMP client (vmm/qmp.c): the input is everything a hostile or broken
 * monitor writes on the socket, followed by EOF. Three commands are pending from the start (ids 1-3,
 * so the input can answer them; the handshake's own command gets id 4). Whatever the bytes, the
 * client must not crash or leak, every command must end exactly once, at most one synthetic
 * SHUTDOWN may be raised, and EOF must leave the client disconnected.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -include build/config.h -I. -Icommon
 *        tests/fuzz/fuzz_qmp.c vmm/qmp.c common/log.c common/util.c common/json-util.c
 *        $(pkg-config --cflags --libs jansson libevent libevent_pthreads)
 * Seeds worth starting from: a QEMU greeting line followed by {"return": {}, "id": 4}. */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "vmm/qmp.h"

typedef struct counts {
        int replies[3];
        int extra_issued, extra_replies;
        int synthetic_shutdowns;
} counts_t;

static void on_reply(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata);

static void on_event(qmp_client_t *q, const char *event, json_t *data, void *userdata) {
        counts_t *c = userdata;
        if (!event || !json_is_object(data))
                abort();
        if (json_is_true(json_object_get(data, "synthetic")) && strcmp(event, "SHUTDOWN") == 0 &&
            json_object_size(data) == 3)
                c->synthetic_shutdowns++;
        /* A command issued from inside a callback must end exactly once too. */
        if (strcmp(event, "STOP") == 0 && c->extra_issued < 4 &&
            qmp_call_async(q, "cont", NULL, on_reply, &c->extra_replies) == 0)
                c->extra_issued++;
}

static void on_reply(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata) {
        int *count = userdata;
        if (r == 0 && !result)
                abort();
        if (r == -EREMOTEIO && (!error || result))
                abort();
        if (r < 0 && r != -EREMOTEIO && (result || error))
                abort();
        (*count)++;
}

static void drain(int fd) {
        char buf[4096];
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
                ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool initialized;
        if (!initialized) {
                signal(SIGPIPE, SIG_IGN);
                log_set_level(LOG_CRIT);
                initialized = true;
        }
        struct event_base *loop = event_base_new();
        int sv[2];
        if (!loop || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        counts_t counts;
        memset(&counts, 0, sizeof counts);
        qmp_client_t *q;
        if (qmp_client_new(loop, sv[1], on_event, &counts, &q) < 0)
                abort();
        for (int i = 0; i < 3; i++)
                if (qmp_call_async(q, i == 1 ? "query-status" : "stop", NULL, on_reply, &counts.replies[i]) < 0)
                        abort();

        size_t off = 0;
        while (off < size) {
                ssize_t n = send(sv[0], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0)
                        off += (size_t) n;
                else if (n < 0 && errno != EAGAIN)
                        break;
                event_base_loop(loop, EVLOOP_NONBLOCK);
                drain(sv[0]);
        }
        shutdown(sv[0], SHUT_WR);
        for (int i = 0; i < 1000 && qmp_client_get_state(q) != QMP_STATE_DISCONNECTED; i++) {
                event_base_loop(loop, EVLOOP_NONBLOCK);
                drain(sv[0]);
        }
        if (qmp_client_get_state(q) != QMP_STATE_DISCONNECTED)
                abort();
        if (counts.synthetic_shutdowns > 1)
                abort();
        qmp_client_close(q);
        for (int i = 0; i < 3; i++)
                if (counts.replies[i] != 1)
                        abort();
        if (counts.extra_replies != counts.extra_issued)
                abort();
        close(sv[0]);
        event_base_free(loop);
        return 0;
}

#ifdef FUZZ_STANDALONE
/* Runs the target over files named on the command line, for a corpus without libFuzzer. */
int main(int argc, char **argv) {
        for (int i = 1; i < argc; i++) {
                FILE *f = fopen(argv[i], "rb");
                if (!f)
                        continue;
                static uint8_t buf[1 << 20];
                size_t n = fread(buf, 1, sizeof buf, f);
                fclose(f);
                LLVMFuzzerTestOneInput(buf, n);
        }
        return 0;
}
#endif
