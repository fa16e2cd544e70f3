/* Unit tests for agent/client.h: a fake guest agent speaks the wire format (agent/protocol.h) on
 * the other end of a socketpair or Unix socket — the handshake, concurrent and out-of-order calls,
 * errors, cancel and close, events, disconnects, protocol violations and stdio streams — and every
 * test checks that no fd or thread is left behind. KATAD_TEST_LOG=1 shows the client's log. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "util.h"

#define LONG_MS 5000 /* anything that should happen "at once" happens well within this, even under valgrind */

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
}

static int64_t elapsed_ms(int64_t since_ns) {
        return (now_monotonic_ns() - since_ns) / 1000000;
}

static int count_dir(const char *path) {
        DIR *d = opendir(path);
        ck_assert_ptr_nonnull(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                n += de->d_name[0] != '.';
        closedir(d);
        return n;
}

/* The connections' I/O threads (named "agent-io"); sanitizers have threads of their own. */
static int count_io_threads(void) {
        DIR *d = opendir("/proc/self/task");
        ck_assert_ptr_nonnull(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char path[300], comm[32] = "";
                snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
                FILE *fp = fopen(path, "re");
                if (!fp)
                        continue; /* it just ended */
                if (fgets(comm, sizeof comm, fp) && strncmp(comm, "agent-io", 8) == 0)
                        n++;
                fclose(fp);
        }
        closedir(d);
        return n;
}

static int count_fds(void) {
        return count_dir("/proc/self/fd") - 1; /* the directory's own */
}

/* A detached I/O thread ends shortly after it freed its connection. */
static int threads_settle(int expected) {
        int n = count_io_threads();
        for (int i = 0; i < 200 && n != expected; i++) {
                sleep_ms(10);
                n = count_io_threads();
        }
        return n;
}

#define LEAK_CHECK_BEGIN int leak_fds = count_fds(), leak_threads = count_io_threads()
#define LEAK_CHECK_END                                                                                                 \
        do {                                                                                                           \
                ck_assert_int_eq(threads_settle(leak_threads), leak_threads);                                          \
                ck_assert_int_eq(count_fds(), leak_fds);                                                               \
        } while (0)

/* ---- the fake agent ---- */

typedef struct frame {
        struct frame *next;
        agent_frame_header_t h;
        char *payload; /* NUL-terminated copy */
} frame_t;

typedef struct fake {
        int fd;
        agent_frame_reader_t reader;
        pthread_mutex_t send_lock;
} fake_t;

static int fake_init(fake_t *f) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        *f = (fake_t){ .fd = sv[1] };
        pthread_mutex_init(&f->send_lock, NULL);
        return sv[0];
}

static void fake_done(fake_t *f) {
        if (f->fd >= 0)
                close(f->fd);
        f->fd = -1;
        agent_frame_reader_free(&f->reader);
        pthread_mutex_destroy(&f->send_lock);
}

static void fake_send_raw(fake_t *f, const void *data, size_t len) {
        pthread_mutex_lock(&f->send_lock);
        const uint8_t *p = data;
        while (len > 0) {
                ssize_t n = send(f->fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break; /* the host hung up: the test notices by other means */
                p += n;
                len -= (size_t) n;
        }
        pthread_mutex_unlock(&f->send_lock);
}

static void fake_send(fake_t *f, agent_frame_type_t type, uint32_t stream, uint32_t id, const void *payload,
                      size_t len) {
        size_t size;
        _cleanup_free_ uint8_t *buf = agent_frame_build(type, stream, id, payload, len, &size);
        ck_assert_ptr_nonnull(buf);
        fake_send_raw(f, buf, size);
}

static void fake_send_text(fake_t *f, agent_frame_type_t type, uint32_t id, const char *text) {
        fake_send(f, type, 0, id, text, strlen(text));
}

static void fake_send_credit(fake_t *f, uint32_t stream, uint32_t bytes) {
        uint8_t p[4] = { (uint8_t) (bytes >> 24), (uint8_t) (bytes >> 16), (uint8_t) (bytes >> 8), (uint8_t) bytes };
        fake_send(f, AGENT_FRAME_CREDIT, stream, 0, p, sizeof p);
}

static void fake_send_hello(fake_t *f, int version) {
        char text[64];
        snprintf(text, sizeof text, "{\"Version\":%d,\"Agent\":\"fake\"}", version);
        fake_send_text(f, AGENT_FRAME_HELLO, 0, text);
}

static void frame_free(frame_t *fr) {
        if (fr)
                free(fr->payload);
        free(fr);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(frame_t *, frame_free);
#define _cleanup_frame_ _cleanup_(frame_freep)

/* The next frame from the host: NULL after timeout_ms or at EOF (*ret_eof). */
static frame_t *fake_recv(fake_t *f, int timeout_ms, bool *ret_eof) {
        int64_t deadline = now_monotonic_ns() + (int64_t) timeout_ms * 1000000;
        if (ret_eof)
                *ret_eof = false;
        for (;;) {
                agent_frame_header_t h;
                const uint8_t *payload;
                int r = agent_frame_reader_next(&f->reader, &h, &payload);
                ck_assert_int_ge(r, 0);
                if (r > 0) {
                        frame_t *fr = calloc(1, sizeof *fr);
                        fr->h = h;
                        fr->payload = malloc(h.length + 1);
                        memcpy(fr->payload, payload, h.length);
                        fr->payload[h.length] = 0;
                        return fr;
                }
                int64_t left = deadline - now_monotonic_ns();
                if (left <= 0)
                        return NULL;
                struct pollfd p = { .fd = f->fd, .events = POLLIN };
                if (poll(&p, 1, (int) (left / 1000000) + 1) <= 0)
                        continue;
                uint8_t buf[65536];
                ssize_t n = recv(f->fd, buf, sizeof buf, 0);
                if (n <= 0) {
                        if (ret_eof)
                                *ret_eof = true;
                        return NULL;
                }
                ck_assert_int_eq(agent_frame_reader_feed(&f->reader, buf, (size_t) n), 0);
        }
}

static frame_t *fake_expect(fake_t *f, agent_frame_type_t type) {
        frame_t *fr = fake_recv(f, LONG_MS, NULL);
        ck_assert_ptr_nonnull(fr);
        ck_assert_int_eq(fr->h.type, type);
        return fr;
}

/* A connection whose handshake is done: the agent's HELLO is written before the host's arrives. */
static agent_conn_t *connect_fake(fake_t *f) {
        int fd = fake_init(f);
        fake_send_hello(f, AGENT_PROTOCOL_VERSION);
        agent_conn_t *c = NULL;
        ck_assert_int_eq(agent_conn_new(fd, LONG_MS, &c), 0);
        frame_free(fake_expect(f, AGENT_FRAME_HELLO));
        return c;
}

/* An agent in a thread that serves RPCs by method: Echo (Params as Result), Fail (Params as
 * Error), Block (no answer until Release, which answers every blocked one first), Event (sends
 * Params as an EVENT, then answers). Other frames are kept for the test to take. */
typedef struct server {
        fake_t *f;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stop, eof;
        uint32_t blocked[64];
        size_t n_blocked;
        unsigned requests;
        frame_t *frames, **frames_tail;
} server_t;

static void respond(fake_t *f, uint32_t id, const char *key, json_t *value) {
        _cleanup_json_ json_t *body = json_pack("{s:O}", key, value);
        _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
        fake_send_text(f, AGENT_FRAME_RESPONSE, id, text);
}

static void server_request(server_t *s, frame_t *fr) {
        _cleanup_json_ json_t *req = json_loads(fr->payload, 0, NULL);
        ck_assert_ptr_nonnull(req);
        const char *method = json_get_string(req, "Method");
        json_t *params = json_object_get(req, "Params");
        ck_assert_ptr_nonnull(method);
        ck_assert(json_is_object(params));
        ck_assert_uint_ne(fr->h.id, 0);
        pthread_mutex_lock(&s->lock);
        s->requests++;
        if (streq(method, "Block")) {
                ck_assert_uint_lt(s->n_blocked, ELEMENTSOF(s->blocked));
                s->blocked[s->n_blocked++] = fr->h.id;
        } else if (streq(method, "Release")) {
                _cleanup_json_ json_t *released = json_pack("{s:b}", "Released", 1);
                for (size_t i = 0; i < s->n_blocked; i++)
                        respond(s->f, s->blocked[i], "Result", released);
                s->n_blocked = 0;
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);

        if (streq(method, "Echo"))
                respond(s->f, fr->h.id, "Result", params);
        else if (streq(method, "Fail"))
                respond(s->f, fr->h.id, "Error", params);
        else if (streq(method, "Release"))
                respond(s->f, fr->h.id, "Result", params);
        else if (streq(method, "Event")) {
                _cleanup_free_ char *text = json_dumps(params, JSON_COMPACT);
                fake_send_text(s->f, AGENT_FRAME_EVENT, 0, text);
                respond(s->f, fr->h.id, "Result", params);
        }
}

static void *server_main(void *userdata) {
        server_t *s = userdata;
        for (;;) {
                pthread_mutex_lock(&s->lock);
                bool stop = s->stop;
                pthread_mutex_unlock(&s->lock);
                if (stop)
                        break;
                bool eof;
                frame_t *fr = fake_recv(s->f, 20, &eof);
                if (eof) {
                        pthread_mutex_lock(&s->lock);
                        s->eof = true;
                        pthread_cond_broadcast(&s->cond);
                        pthread_mutex_unlock(&s->lock);
                        break;
                }
                if (!fr)
                        continue;
                if (fr->h.type == AGENT_FRAME_REQUEST) {
                        server_request(s, fr);
                        frame_free(fr);
                        continue;
                }
                pthread_mutex_lock(&s->lock);
                *s->frames_tail = fr;
                s->frames_tail = &fr->next;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
        }
        return NULL;
}

static void server_start(server_t *s, fake_t *f) {
        *s = (server_t){ .f = f };
        s->frames_tail = &s->frames;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        ck_assert_int_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server_t *s) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        while (s->frames) {
                frame_t *fr = s->frames;
                s->frames = fr->next;
                frame_free(fr);
        }
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
}

static bool server_wait_blocked(server_t *s, size_t n) {
        int64_t deadline = now_monotonic_ns() + (int64_t) LONG_MS * 1000000;
        pthread_mutex_lock(&s->lock);
        while (s->n_blocked < n && now_monotonic_ns() < deadline) {
                pthread_mutex_unlock(&s->lock);
                sleep_ms(5);
                pthread_mutex_lock(&s->lock);
        }
        bool ok = s->n_blocked >= n;
        pthread_mutex_unlock(&s->lock);
        return ok;
}

/* The next non-REQUEST frame the host sent. */
static frame_t *server_take(server_t *s, agent_frame_type_t type) {
        int64_t deadline = now_monotonic_ns() + (int64_t) LONG_MS * 1000000;
        pthread_mutex_lock(&s->lock);
        while (!s->frames && now_monotonic_ns() < deadline) {
                pthread_mutex_unlock(&s->lock);
                sleep_ms(5);
                pthread_mutex_lock(&s->lock);
        }
        frame_t *fr = s->frames;
        if (fr) {
                s->frames = fr->next;
                if (!s->frames)
                        s->frames_tail = &s->frames;
                fr->next = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        ck_assert_ptr_nonnull(fr);
        ck_assert_int_eq(fr->h.type, type);
        return fr;
}

/* Echo round trip: once it returns, the host has handled every frame the agent sent before. */
static void sync_echo(agent_t *a, int n) {
        json_t *result = NULL;
        ck_assert_int_eq(agent_call(a, "Echo", json_pack("{s:i}", "N", n), &result, NULL), 0);
        ck_assert_int_eq(json_get_int(result, "N", -1), n);
        json_decref(result);
}

/* A call in a thread, for calls the test wants to wake. */
typedef struct async_call {
        pthread_t thread;
        agent_t *agent;
        const char *method;
        json_t *params;
        int r;
        json_t *result;
        char *message;
} async_call_t;

static void *async_call_main(void *userdata) {
        async_call_t *ac = userdata;
        ac->r = agent_call(ac->agent, ac->method, ac->params, &ac->result, &ac->message);
        return NULL;
}

static void async_call_start(async_call_t *ac, agent_t *a, const char *method, json_t *params) {
        *ac = (async_call_t){ .agent = a, .method = method, .params = params };
        ck_assert_int_eq(pthread_create(&ac->thread, NULL, async_call_main, ac), 0);
}

static void async_call_join(async_call_t *ac) {
        pthread_join(ac->thread, NULL);
}

static void async_call_done(async_call_t *ac) {
        json_decref(ac->result);
        free(ac->message);
}

/* sync_echo without a server thread: the test answers the REQUEST itself. */
static void sync_echo_raw(fake_t *f, agent_t *a) {
        async_call_t ac;
        async_call_start(&ac, a, "Echo", NULL);
        _cleanup_frame_ frame_t *req = fake_expect(f, AGENT_FRAME_REQUEST);
        fake_send_text(f, AGENT_FRAME_RESPONSE, req->h.id, "{\"Result\":{}}");
        async_call_join(&ac);
        ck_assert_int_eq(ac.r, 0);
        async_call_done(&ac);
}

/* What callbacks saw. */
typedef struct recorder {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int events, ends, end_error, disconnects, disconnect_error;
        json_int_t last_n;
        bool in_handler, wrong_thread;
        int handler_sleep_ms;
        bool close_in_handler, call_in_handler;
        int call_in_handler_r;
        char data[65536];
        size_t data_len;
        pthread_t main_thread;
} recorder_t;

static void recorder_init(recorder_t *rec) {
        *rec = (recorder_t){ .main_thread = pthread_self() };
        pthread_mutex_init(&rec->lock, NULL);
        pthread_cond_init(&rec->cond, NULL);
}

static void recorder_done(recorder_t *rec) {
        pthread_cond_destroy(&rec->cond);
        pthread_mutex_destroy(&rec->lock);
}

static int recorder_get(recorder_t *rec, const int *field) {
        pthread_mutex_lock(&rec->lock);
        int v = *field;
        pthread_mutex_unlock(&rec->lock);
        return v;
}

/* Waits until *field reaches at least want. */
static int recorder_wait(recorder_t *rec, const int *field, int want) {
        int64_t deadline = now_monotonic_ns() + (int64_t) LONG_MS * 1000000;
        pthread_mutex_lock(&rec->lock);
        while (*field < want && now_monotonic_ns() < deadline) {
                pthread_mutex_unlock(&rec->lock);
                sleep_ms(2);
                pthread_mutex_lock(&rec->lock);
        }
        int v = *field;
        pthread_mutex_unlock(&rec->lock);
        return v;
}

static void on_event_record(agent_t *a, json_t *event, void *userdata) {
        recorder_t *rec = userdata;
        pthread_mutex_lock(&rec->lock);
        rec->in_handler = true;
        rec->wrong_thread |= pthread_equal(pthread_self(), rec->main_thread);
        int sleep_for = rec->handler_sleep_ms;
        pthread_mutex_unlock(&rec->lock);
        if (sleep_for)
                sleep_ms(sleep_for);
        if (rec->call_in_handler) {
                int r = agent_call(a, "Echo", NULL, NULL, NULL);
                pthread_mutex_lock(&rec->lock);
                rec->call_in_handler_r = r;
                pthread_mutex_unlock(&rec->lock);
        }
        pthread_mutex_lock(&rec->lock);
        rec->last_n = json_get_int(event, "N", -1);
        rec->events++;
        rec->in_handler = false;
        bool close_it = rec->close_in_handler;
        pthread_mutex_unlock(&rec->lock);
        if (close_it)
                agent_close(a);
}

static void on_stream_record(_unused_ agent_t *a, _unused_ uint32_t stream_id, const void *data, size_t len, int error,
                             void *userdata) {
        recorder_t *rec = userdata;
        pthread_mutex_lock(&rec->lock);
        rec->wrong_thread |= pthread_equal(pthread_self(), rec->main_thread);
        if (data) {
                ck_assert_uint_eq(rec->ends, 0);
                ck_assert_uint_le(rec->data_len + len, sizeof rec->data);
                memcpy(rec->data + rec->data_len, data, len);
                rec->data_len += len;
        } else {
                rec->ends++;
                rec->end_error = error;
        }
        pthread_mutex_unlock(&rec->lock);
}

static void on_disconnect_record(_unused_ agent_conn_t *c, int error, void *userdata) {
        recorder_t *rec = userdata;
        pthread_mutex_lock(&rec->lock);
        rec->wrong_thread |= pthread_equal(pthread_self(), rec->main_thread);
        rec->disconnects++;
        rec->disconnect_error = error;
        pthread_mutex_unlock(&rec->lock);
}

/* ---- handshake ---- */

START_TEST(test_handshake) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        int fd = fake_init(&f);
        fake_send_hello(&f, AGENT_PROTOCOL_VERSION);
        agent_conn_t *c = NULL;
        ck_assert_int_eq(agent_conn_new(fd, LONG_MS, &c), 0);
        _cleanup_frame_ frame_t *hello = fake_expect(&f, AGENT_FRAME_HELLO);
        ck_assert_uint_eq(hello->h.stream, 0);
        ck_assert_uint_eq(hello->h.id, 0);
        _cleanup_json_ json_t *j = json_loads(hello->payload, 0, NULL);
        ck_assert_int_eq(json_get_int(j, "Version", 0), 1);
        ck_assert_str_eq(json_get_string(j, "Agent"), "katad " PACKAGE_VERSION);
        ck_assert(agent_conn_is_alive(c));
        ck_assert_int_eq(count_io_threads(), leak_threads + 1);
        agent_conn_unref(c);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

/* A guest that boots slowly: the agent answers only the third HELLO and, as if the earlier ones had
 * been queued, answers twice more; nothing but HELLO may come before the first answer. */
static void *slow_guest_main(void *userdata) {
        fake_t *f = userdata;
        int hellos = 0;
        while (hellos < 3) {
                _cleanup_frame_ frame_t *fr = fake_recv(f, LONG_MS, NULL);
                ck_assert_ptr_nonnull(fr);
                ck_assert_int_eq(fr->h.type, AGENT_FRAME_HELLO);
                hellos++;
        }
        for (int i = 0; i < 3; i++)
                fake_send_hello(f, AGENT_PROTOCOL_VERSION);
        /* The first REQUEST follows any remaining HELLO. */
        for (;;) {
                _cleanup_frame_ frame_t *fr = fake_recv(f, LONG_MS, NULL);
                ck_assert_ptr_nonnull(fr);
                if (fr->h.type == AGENT_FRAME_HELLO) {
                        hellos++;
                        continue;
                }
                ck_assert_int_eq(fr->h.type, AGENT_FRAME_REQUEST);
                fake_send_text(f, AGENT_FRAME_RESPONSE, fr->h.id, "{\"Result\":{\"Hellos\":1}}");
                break;
        }
        return (void *) (intptr_t) hellos;
}

START_TEST(test_handshake_slow_guest) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        int fd = fake_init(&f);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, slow_guest_main, &f), 0);
        int64_t start = now_monotonic_ns();
        agent_conn_t *c = NULL;
        ck_assert_int_eq(agent_conn_new(fd, LONG_MS, &c), 0);
        ck_assert_int_ge(elapsed_ms(start), 390);
        agent_t *a = NULL;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        json_t *result = NULL;
        ck_assert_int_eq(agent_call(a, "Ping", NULL, &result, NULL), 0);
        ck_assert_int_eq(json_get_int(result, "Hellos", 0), 1);
        json_decref(result);
        void *hellos;
        pthread_join(t, &hellos);
        ck_assert_int_ge((intptr_t) hellos, 3);
        ck_assert(agent_conn_is_alive(c)); /* the extra answers were ignored */
        agent_close(a);
        agent_conn_unref(c);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_handshake_version_mismatch) {
        LEAK_CHECK_BEGIN;
        static const char *const hellos[] = {
                "{\"Version\":2,\"Agent\":\"future\"}",
                "{\"Version\":0}",
                "{\"Version\":-1}",
        };
        for (size_t i = 0; i < ELEMENTSOF(hellos); i++) {
                fake_t f;
                int fd = fake_init(&f);
                fake_send_text(&f, AGENT_FRAME_HELLO, 0, hellos[i]);
                agent_conn_t *c = NULL;
                ck_assert_msg(agent_conn_new(fd, LONG_MS, &c) == -EPROTO, "accepted %s", hellos[i]);
                ck_assert_ptr_null(c);
                fake_done(&f);
        }
        LEAK_CHECK_END;
}
END_TEST

/* What the agent sent to an earlier connection comes first on a virtio-serial port: whole frames,
 * the tail of a frame, HELLOs that are not JSON. The handshake skips to the real HELLO. */
START_TEST(test_handshake_skips_to_hello) {
        LEAK_CHECK_BEGIN;
        uint8_t garbage[AGENT_FRAME_HEADER_SIZE];
        memset(garbage, 0xff, sizeof garbage);
        agent_frame_header_t big = { .length = 500000, .stream = 5, .type = AGENT_FRAME_DATA };
        uint8_t big_header[AGENT_FRAME_HEADER_SIZE];
        agent_frame_header_encode(&big, big_header);
        static const char *const bad_hellos[] = {
                "not json",
                "[1]",
                "{\"Agent\":\"no version\"}",
                "{\"Version\":\"1\"}",
        };
        for (int variant = 0; variant < 4; variant++) {
                fake_t f;
                int fd = fake_init(&f);
                switch (variant) {
                case 0:
                        fake_send_raw(&f, garbage, sizeof garbage);
                        break;
                case 1:
                        /* A header whose payload went to the previous host: its length means nothing. */
                        fake_send_raw(&f, big_header, sizeof big_header);
                        fake_send_raw(&f, "tail of stdout", 14);
                        break;
                case 2:
                        fake_send_text(&f, AGENT_FRAME_RESPONSE, 7, "{\"Result\":{}}");
                        fake_send_text(&f, AGENT_FRAME_EVENT, 0, "{\"Type\":\"oom\"}");
                        fake_send(&f, AGENT_FRAME_DATA, 3, 0, "out", 3);
                        break;
                case 3:
                        for (size_t i = 0; i < ELEMENTSOF(bad_hellos); i++)
                                fake_send_text(&f, AGENT_FRAME_HELLO, 0, bad_hellos[i]);
                        break;
                }
                fake_send_hello(&f, AGENT_PROTOCOL_VERSION);
                fake_send_text(&f, AGENT_FRAME_EVENT, 0, "{\"Type\":\"after\"}");
                agent_conn_t *c = NULL;
                ck_assert_msg(agent_conn_new(fd, LONG_MS, &c) == 0, "variant %d", variant);
                frame_free(fake_expect(&f, AGENT_FRAME_HELLO));
                agent_t *a;
                ck_assert_int_eq(agent_conn_open(c, &a), 0);
                server_t s;
                server_start(&s, &f);
                sync_echo(a, 1);
                ck_assert(agent_conn_is_alive(c));
                agent_close(a);
                agent_conn_unref(c);
                server_stop(&s);
                fake_done(&f);
        }
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_handshake_timeout_and_eof) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        int fd = fake_init(&f);
        agent_conn_t *c = NULL;
        int64_t start = now_monotonic_ns();
        ck_assert_int_eq(agent_conn_new(fd, 450, &c), -ETIMEDOUT);
        ck_assert_int_ge(elapsed_ms(start), 450);
        ck_assert_int_lt(elapsed_ms(start), LONG_MS);
        /* HELLO at 0, 200 and 400 ms. */
        int n = 0;
        for (frame_t *fr; (fr = fake_recv(&f, 50, NULL)); n++) {
                ck_assert_int_eq(fr->h.type, AGENT_FRAME_HELLO);
                frame_free(fr);
        }
        ck_assert_int_ge(n, 2); /* 3 unless the machine is very slow */
        ck_assert_int_le(n, 3);
        fake_done(&f);

        fd = fake_init(&f);
        close(f.fd);
        f.fd = -1;
        ck_assert_int_eq(agent_conn_new(fd, LONG_MS, &c), -ECONNRESET);
        fake_done(&f);

        ck_assert_int_eq(agent_conn_new(-1, LONG_MS, &c), -EBADF);
        LEAK_CHECK_END;
}
END_TEST

/* ---- connecting by path ---- */

typedef struct listener {
        char path[108];
        int delay_ms;
} listener_t;

static void *late_listener_main(void *userdata) {
        listener_t *l = userdata;
        sleep_ms(l->delay_ms);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, l->path);
        ck_assert_int_eq(bind(s, (struct sockaddr *) &sa, sizeof sa), 0);
        ck_assert_int_eq(listen(s, 1), 0);
        fake_t f = { .fd = accept4(s, NULL, NULL, SOCK_CLOEXEC) };
        ck_assert_int_ge(f.fd, 0);
        close(s);
        pthread_mutex_init(&f.send_lock, NULL);
        frame_free(fake_expect(&f, AGENT_FRAME_HELLO));
        fake_send_hello(&f, AGENT_PROTOCOL_VERSION);
        bool eof = false;
        while (!eof)
                frame_free(fake_recv(&f, LONG_MS, &eof));
        fake_done(&f);
        return NULL;
}

START_TEST(test_connect_path) {
        LEAK_CHECK_BEGIN;
        char dir[] = "/tmp/test-agent-client-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        listener_t l = { .delay_ms = 300 };
        snprintf(l.path, sizeof l.path, "%s/agent.sock", dir);
        agent_conn_t *c = NULL;

        /* Nobody ever creates it. */
        int64_t start = now_monotonic_ns();
        ck_assert_int_eq(agent_conn_connect(l.path, 200, &c), -ETIMEDOUT);
        ck_assert_int_ge(elapsed_ms(start), 200);

        /* A socket nobody listens on. */
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        strcpy(sa.sun_path, l.path);
        ck_assert_int_eq(bind(s, (struct sockaddr *) &sa, sizeof sa), 0);
        close(s);
        ck_assert_int_eq(agent_conn_connect(l.path, 200, &c), -ECONNREFUSED);
        unlink(l.path);

        /* QEMU creates it a while after we started to try. */
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, late_listener_main, &l), 0);
        start = now_monotonic_ns();
        ck_assert_int_eq(agent_conn_connect(l.path, LONG_MS, &c), 0);
        ck_assert_int_ge(elapsed_ms(start), 300);
        ck_assert(agent_conn_is_alive(c));
        agent_conn_unref(c);
        pthread_join(t, NULL);

        char longpath[200];
        memset(longpath, 'a', sizeof longpath - 1);
        longpath[sizeof longpath - 1] = 0;
        ck_assert_int_eq(agent_conn_connect(longpath, 100, &c), -ENAMETOOLONG);
        ck_assert_int_eq(agent_conn_connect("", 100, &c), -EINVAL);
        unlink(l.path);
        rmdir(dir);
        LEAK_CHECK_END;
}
END_TEST

/* ---- calls ---- */

#define N_CALLERS 8
#define N_HANDLES 4

typedef struct caller {
        pthread_t thread;
        agent_t *agent;
        int n, r;
        json_int_t got;
} caller_t;

static void *caller_main(void *userdata) {
        caller_t *cl = userdata;
        json_t *params = json_pack("{s:i}", "N", cl->n);
        json_t *result = NULL;
        /* Through ops directly: params is borrowed there. */
        cl->r = cl->agent->ops->call(cl->agent, "Echo", params, &result, NULL);
        ck_assert_int_eq(params->refcount, 1);
        json_decref(params);
        cl->got = json_get_int(result, "N", -1);
        json_decref(result);
        return NULL;
}

START_TEST(test_concurrent_calls_out_of_order) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *handles[N_HANDLES];
        for (int i = 0; i < N_HANDLES; i++)
                ck_assert_int_eq(agent_conn_open(c, &handles[i]), 0);
        caller_t callers[N_CALLERS];
        for (int i = 0; i < N_CALLERS; i++) {
                callers[i] = (caller_t){ .agent = handles[i % N_HANDLES], .n = i };
                ck_assert_int_eq(pthread_create(&callers[i].thread, NULL, caller_main, &callers[i]), 0);
        }
        /* Every request first, then the answers in reverse order of arrival. */
        frame_t *requests[N_CALLERS];
        for (int i = 0; i < N_CALLERS; i++) {
                requests[i] = fake_expect(&f, AGENT_FRAME_REQUEST);
                ck_assert_uint_eq(requests[i]->h.stream, 0);
                ck_assert_uint_ne(requests[i]->h.id, 0);
                for (int k = 0; k < i; k++)
                        ck_assert_uint_ne(requests[i]->h.id, requests[k]->h.id);
        }
        for (int i = N_CALLERS - 1; i >= 0; i--) {
                _cleanup_json_ json_t *req = json_loads(requests[i]->payload, 0, NULL);
                ck_assert_str_eq(json_get_string(req, "Method"), "Echo");
                json_int_t n = json_get_int(json_object_get(req, "Params"), "N", -1);
                char text[64];
                snprintf(text, sizeof text, "{\"Result\":{\"N\":%d}}", (int) n * 10);
                fake_send_text(&f, AGENT_FRAME_RESPONSE, requests[i]->h.id, text);
                frame_free(requests[i]);
        }
        for (int i = 0; i < N_CALLERS; i++) {
                pthread_join(callers[i].thread, NULL);
                ck_assert_int_eq(callers[i].r, 0);
                ck_assert_int_eq(callers[i].got, i * 10);
        }
        for (int i = 0; i < N_HANDLES; i++)
                agent_close(handles[i]);
        agent_conn_unref(c);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_call_params_and_errors) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        agent_t *a;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);

        /* No params travel as {}. */
        json_t *result = NULL;
        ck_assert_int_eq(agent_call(a, "Echo", NULL, &result, NULL), 0);
        ck_assert(json_is_object(result));
        ck_assert_uint_eq(json_object_size(result), 0);
        json_decref(result);
        /* Results nobody wants are freed. */
        ck_assert_int_eq(agent_call(a, "Echo", json_pack("{s:s}", "K", "v"), NULL, NULL), 0);

        char *msg = NULL;
        result = NULL;
        ck_assert_int_eq(agent_call(a, "Fail",
                                    json_pack("{s:i, s:s}", "Errno", EBUSY, "Message", "container web is running"),
                                    &result, &msg),
                         -EBUSY);
        ck_assert_ptr_null(result);
        ck_assert_str_eq(msg, "container web is running");
        free(msg);
        msg = (char *) "untouched";
        ck_assert_int_eq(agent_call(a, "Fail", json_pack("{s:i}", "Errno", ENOENT), NULL, &msg), -ENOENT);
        ck_assert_ptr_null(msg);
        ck_assert_int_eq(agent_call(a, "Fail", json_pack("{s:i, s:n}", "Errno", ESRCH, "Message"), NULL, &msg), -ESRCH);
        ck_assert_ptr_null(msg);
        ck_assert_int_eq(agent_call(a, "Fail", json_pack("{s:i, s:s}", "Errno", EINVAL, "Message", "bad"), NULL, NULL),
                         -EINVAL);

        /* Too big for one frame. */
        size_t big = AGENT_FRAME_MAX_PAYLOAD + 1;
        char *blob = malloc(big + 1);
        memset(blob, 'x', big);
        blob[big] = 0;
        ck_assert_int_eq(agent_call(a, "Echo", json_pack("{s:s}", "Blob", blob), NULL, &msg), -EMSGSIZE);
        ck_assert_ptr_nonnull(msg);
        free(msg);
        free(blob);
        msg = (char *) "untouched";
        ck_assert_int_eq(agent_call(a, NULL, NULL, NULL, &msg), -EINVAL);
        ck_assert_ptr_null(msg);

        ck_assert(agent_conn_is_alive(c));
        agent_close(a);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_cancel_wakes_only_its_handle) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        agent_t *a, *b;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);

        async_call_t blocked, other;
        async_call_start(&blocked, a, "Block", NULL);
        async_call_start(&other, b, "Block", NULL);
        ck_assert(server_wait_blocked(&s, 2));
        /* Other calls on both handles' connection go ahead meanwhile. */
        for (int i = 0; i < 3; i++)
                sync_echo(b, i);

        agent_cancel(a);
        async_call_join(&blocked);
        ck_assert_int_eq(blocked.r, -ESHUTDOWN);
        ck_assert_str_eq(blocked.message, "the agent connection is closed");
        ck_assert_ptr_null(blocked.result);
        async_call_done(&blocked);
        /* Future calls on a fail at once; b is untouched. */
        ck_assert_int_eq(agent_call(a, "Echo", NULL, NULL, NULL), -ESHUTDOWN);
        sync_echo(b, 10);

        /* Release answers both blocked requests: a's answer has nobody waiting and is dropped. */
        json_t *result = NULL;
        ck_assert_int_eq(agent_call(b, "Release", NULL, &result, NULL), 0);
        json_decref(result);
        async_call_join(&other);
        ck_assert_int_eq(other.r, 0);
        ck_assert(json_get_bool(other.result, "Released", false));
        async_call_done(&other);
        sync_echo(b, 11);
        ck_assert(agent_conn_is_alive(c));

        /* A blocked call woken by close from another thread. */
        async_call_start(&other, b, "Block", NULL);
        ck_assert(server_wait_blocked(&s, 1));
        sleep_ms(20);
        agent_close(b);
        async_call_join(&other);
        ck_assert_int_eq(other.r, -ESHUTDOWN);
        async_call_done(&other);

        agent_close(a);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

/* While the agent reads nothing, frames wait in the host's queue; a cancelled call's REQUEST that
 * has not started to go out is withdrawn (its side effect never happens) and cancel is prompt. */
START_TEST(test_cancel_withdraws_unsent_request) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *a, *b;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        fake_send_credit(&f, 3, 8u << 20);
        ck_assert_int_eq(agent_stream_open(a, 3, NULL, NULL), 0);
        static char chunk[65536];
        memset(chunk, 'd', sizeof chunk);
        size_t total = 0;
        while (total < (4u << 20)) {
                int r = agent_stream_write(a, 3, chunk, sizeof chunk, LONG_MS); /* waits for the CREDIT */
                ck_assert_int_gt(r, 0);
                total += (size_t) r;
        }
        async_call_t blocked;
        async_call_start(&blocked, b, "Withdrawn", NULL);
        sleep_ms(50);
        int64_t start = now_monotonic_ns();
        agent_cancel(b);
        async_call_join(&blocked);
        ck_assert_int_lt(elapsed_ms(start), 1000);
        ck_assert_int_eq(blocked.r, -ESHUTDOWN);
        async_call_done(&blocked);

        /* The agent drains: all the DATA, then a's next call, and never the withdrawn one. */
        async_call_t next;
        async_call_start(&next, a, "After", NULL);
        size_t got = 0;
        for (;;) {
                _cleanup_frame_ frame_t *fr = fake_recv(&f, LONG_MS, NULL);
                ck_assert_ptr_nonnull(fr);
                if (fr->h.type == AGENT_FRAME_DATA) {
                        got += fr->h.length;
                        continue;
                }
                ck_assert_int_eq(fr->h.type, AGENT_FRAME_REQUEST);
                ck_assert_ptr_nonnull(strstr(fr->payload, "\"After\""));
                fake_send_text(&f, AGENT_FRAME_RESPONSE, fr->h.id, "{\"Result\":{}}");
                break;
        }
        ck_assert_uint_eq(got, total);
        async_call_join(&next);
        ck_assert_int_eq(next.r, 0);
        async_call_done(&next);
        agent_close(a);
        agent_close(b);
        agent_conn_unref(c);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

/* ---- events ---- */

static void send_event(fake_t *f, int n) {
        char text[64];
        snprintf(text, sizeof text, "{\"Type\":\"process-exit\",\"N\":%d}", n);
        fake_send_text(f, AGENT_FRAME_EVENT, 0, text);
}

START_TEST(test_events_to_every_handler) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *a, *b, *silent;
        recorder_t ra, rb;
        recorder_init(&ra);
        recorder_init(&rb);
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        ck_assert_int_eq(agent_conn_open(c, &silent), 0);
        agent_set_event_handler(a, on_event_record, &ra);
        agent_set_event_handler(b, on_event_record, &rb);

        send_event(&f, 1);
        send_event(&f, 2);
        ck_assert_int_eq(recorder_wait(&ra, &ra.events, 2), 2);
        ck_assert_int_eq(recorder_wait(&rb, &rb.events, 2), 2);
        ck_assert_int_eq(ra.last_n, 2);
        /* A cancelled handle still gets events until it is closed. */
        agent_cancel(a);
        send_event(&f, 3);
        ck_assert_int_eq(recorder_wait(&ra, &ra.events, 3), 3);
        ck_assert_int_eq(recorder_wait(&rb, &rb.events, 3), 3);

        agent_close(a);
        send_event(&f, 4);
        send_event(&f, 5);
        ck_assert_int_eq(recorder_wait(&rb, &rb.events, 5), 5);
        ck_assert_int_eq(recorder_get(&ra, &ra.events), 3);
        ck_assert(!ra.wrong_thread && !rb.wrong_thread);

        agent_close(b);
        agent_close(silent);
        agent_conn_unref(c);
        fake_done(&f);
        recorder_done(&ra);
        recorder_done(&rb);
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_close_waits_for_delivery) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *a, *b;
        recorder_t ra, rb;
        recorder_init(&ra);
        recorder_init(&rb);
        ra.handler_sleep_ms = 200;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        agent_set_event_handler(a, on_event_record, &ra);
        agent_set_event_handler(b, on_event_record, &rb);
        send_event(&f, 1);
        for (int i = 0; i < 1000; i++) {
                pthread_mutex_lock(&ra.lock);
                bool inside = ra.in_handler;
                pthread_mutex_unlock(&ra.lock);
                if (inside)
                        break;
                sleep_ms(1);
        }
        pthread_mutex_lock(&ra.lock);
        ck_assert(ra.in_handler);
        pthread_mutex_unlock(&ra.lock);
        agent_close(a);
        /* close returned: the handler is done and nothing more will come. */
        pthread_mutex_lock(&ra.lock);
        ck_assert(!ra.in_handler);
        ck_assert_int_eq(ra.events, 1);
        pthread_mutex_unlock(&ra.lock);
        for (int n = 2; n <= 20; n++)
                send_event(&f, n);
        ck_assert_int_eq(recorder_wait(&rb, &rb.events, 20), 20);
        ck_assert_int_eq(recorder_get(&ra, &ra.events), 1);
        agent_close(b);
        agent_conn_unref(c);
        fake_done(&f);
        recorder_done(&ra);
        recorder_done(&rb);
        LEAK_CHECK_END;
}
END_TEST

/* From its own handler: a call fails with -EDEADLK and close does not deadlock; with the
 * connection unreferenced before, that close frees everything from the I/O thread. */
START_TEST(test_close_from_handler) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *a, *b;
        recorder_t ra, rb;
        recorder_init(&ra);
        recorder_init(&rb);
        ra.call_in_handler = true;
        ra.close_in_handler = true;
        rb.close_in_handler = true;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        agent_set_event_handler(a, on_event_record, &ra);
        agent_set_event_handler(b, on_event_record, &rb);
        agent_conn_unref(c);
        send_event(&f, 1);
        send_event(&f, 2);
        ck_assert_int_eq(recorder_wait(&ra, &ra.events, 1), 1);
        ck_assert_int_eq(recorder_wait(&rb, &rb.events, 1), 1);
        ck_assert_int_eq(recorder_get(&ra, &ra.call_in_handler_r), -EDEADLK);
        /* The connection went away with the last handle: the agent sees EOF. */
        bool eof = false;
        while (!eof)
                ck_assert_ptr_null(fake_recv(&f, LONG_MS, &eof));
        sleep_ms(20);
        ck_assert_int_eq(recorder_get(&ra, &ra.events), 1);
        ck_assert_int_eq(recorder_get(&rb, &rb.events), 1);
        fake_done(&f);
        recorder_done(&ra);
        recorder_done(&rb);
        LEAK_CHECK_END;
}
END_TEST

/* Handles come and go while events stream in: none reaches a handle after its close returned. */
typedef struct guard {
        int closed, violations, events;
} guard_t;

static void on_event_guard(_unused_ agent_t *a, _unused_ json_t *event, void *userdata) {
        guard_t *g = userdata;
        if (__atomic_load_n(&g->closed, __ATOMIC_SEQ_CST))
                __atomic_add_fetch(&g->violations, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&g->events, 1, __ATOMIC_SEQ_CST);
}

typedef struct event_pump {
        fake_t *f;
        int stop, pause, paused;
} event_pump_t;

static void *event_pump_main(void *userdata) {
        event_pump_t *p = userdata;
        for (int n = 0; !__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST); n++) {
                bool pause = __atomic_load_n(&p->pause, __ATOMIC_SEQ_CST);
                __atomic_store_n(&p->paused, pause, __ATOMIC_SEQ_CST);
                if (pause) {
                        sleep_ms(1);
                        continue;
                }
                send_event(p->f, n);
                if (n % 16 == 0)
                        sleep_ms(1);
        }
        return NULL;
}

static void event_pump_pause(event_pump_t *p, bool pause) {
        __atomic_store_n(&p->pause, pause, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&p->paused, __ATOMIC_SEQ_CST) != pause)
                sleep_ms(1);
}

START_TEST(test_events_close_race) {
        LEAK_CHECK_BEGIN;
        enum { ROUNDS = 200 };
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *keep;
        ck_assert_int_eq(agent_conn_open(c, &keep), 0);
        event_pump_t pump = { .f = &f };
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, event_pump_main, &pump), 0);
        static guard_t guards[ROUNDS];
        memset(guards, 0, sizeof guards);
        int delivered = 0;
        for (int i = 0; i < ROUNDS; i++) {
                /* agent_set_event_handler is not synchronized (agent.h: call it before events can come):
                 * set it while the host has no event in hand. */
                event_pump_pause(&pump, true);
                sync_echo_raw(&f, keep);
                agent_t *a;
                ck_assert_int_eq(agent_conn_open(c, &a), 0);
                agent_set_event_handler(a, on_event_guard, &guards[i]);
                event_pump_pause(&pump, false);
                sleep_ms(1 + i % 3);
                agent_close(a);
                __atomic_store_n(&guards[i].closed, 1, __ATOMIC_SEQ_CST);
                delivered += __atomic_load_n(&guards[i].events, __ATOMIC_SEQ_CST) > 0;
        }
        __atomic_store_n(&pump.stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(t, NULL);
        /* The host handled everything the pump sent: late events had no handle left to reach. */
        sync_echo_raw(&f, keep);
        for (int i = 0; i < ROUNDS; i++)
                ck_assert_int_eq(guards[i].violations, 0);
        ck_assert_int_gt(delivered, ROUNDS / 2);
        ck_assert(agent_conn_is_alive(c));
        agent_close(keep);
        agent_conn_unref(c);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

/* ---- disconnects and protocol errors ---- */

START_TEST(test_disconnect_mid_call) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        recorder_t rec, rs;
        recorder_init(&rec);
        recorder_init(&rs);
        agent_conn_set_disconnect_handler(c, on_disconnect_record, &rec);
        agent_t *a, *b;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        ck_assert_int_eq(agent_stream_open(a, 5, on_stream_record, &rs), 0);
        async_call_t c1, c2;
        async_call_start(&c1, a, "Block", NULL);
        async_call_start(&c2, b, "Block", NULL);
        ck_assert(server_wait_blocked(&s, 2));
        server_stop(&s);
        shutdown(f.fd, SHUT_RDWR);

        async_call_join(&c1);
        async_call_join(&c2);
        ck_assert_int_eq(c1.r, -ECONNRESET);
        ck_assert_int_eq(c2.r, -ECONNRESET);
        ck_assert_str_eq(c1.message, "the agent connection was lost");
        async_call_done(&c1);
        async_call_done(&c2);
        ck_assert_int_eq(recorder_wait(&rec, &rec.disconnects, 1), 1);
        ck_assert_int_eq(rec.disconnect_error, -ECONNRESET);
        ck_assert_int_eq(recorder_wait(&rs, &rs.ends, 1), 1);
        ck_assert_int_eq(rs.end_error, -ECONNRESET);
        ck_assert(!agent_conn_is_alive(c));

        ck_assert_int_eq(agent_call(a, "Echo", NULL, NULL, NULL), -ECONNRESET);
        agent_t *late = NULL;
        ck_assert_int_eq(agent_conn_open(c, &late), -ECONNRESET);
        ck_assert_int_eq(agent_stream_open(b, 6, NULL, NULL), -ECONNRESET);
        ck_assert_int_eq(agent_stream_write(a, 5, "x", 1, 0), -ECONNRESET);
        sleep_ms(50);
        ck_assert_int_eq(recorder_get(&rec, &rec.disconnects), 1);
        ck_assert_int_eq(recorder_get(&rs, &rs.ends), 1);
        ck_assert(!rec.wrong_thread && !rs.wrong_thread);

        agent_close(a);
        agent_close(b);
        agent_conn_unref(c);
        fake_done(&f);
        recorder_done(&rec);
        recorder_done(&rs);
        LEAK_CHECK_END;
}
END_TEST

static void garbage_case(const void *bytes, size_t len, agent_frame_type_t type, uint32_t stream, uint32_t id,
                         const char *what) {
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        recorder_t rec;
        recorder_init(&rec);
        agent_conn_set_disconnect_handler(c, on_disconnect_record, &rec);
        agent_t *a;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_stream_open(a, 2, NULL, NULL), 0);
        ck_assert_int_eq(agent_stream_credit(a, 2, 4), 0);
        async_call_t call;
        async_call_start(&call, a, "Pending", NULL);
        frame_free(fake_expect(&f, AGENT_FRAME_CREDIT));
        _cleanup_frame_ frame_t *req = fake_expect(&f, AGENT_FRAME_REQUEST);
        if (type)
                fake_send(&f, type, stream, id ? id : req->h.id, bytes, len);
        else
                fake_send_raw(&f, bytes, len);
        async_call_join(&call);
        ck_assert_msg(call.r == -ECONNRESET, "%s: call returned %d", what, call.r);
        async_call_done(&call);
        ck_assert_int_eq(recorder_wait(&rec, &rec.disconnects, 1), 1);
        ck_assert_msg(rec.disconnect_error == -EPROTO, "%s: died with %d", what, rec.disconnect_error);
        ck_assert(!agent_conn_is_alive(c));
        /* The host hung up its end. */
        bool eof = false;
        ck_assert_ptr_null(fake_recv(&f, LONG_MS, &eof));
        ck_assert(eof);
        agent_close(a);
        agent_conn_unref(c);
        fake_done(&f);
        recorder_done(&rec);
}

START_TEST(test_protocol_garbage) {
        LEAK_CHECK_BEGIN;
        uint8_t header[AGENT_FRAME_HEADER_SIZE];
        memset(header, 0xff, sizeof header);
        garbage_case(header, sizeof header, 0, 0, 0, "bad header");
        agent_frame_header_t h = { .length = AGENT_FRAME_MAX_PAYLOAD + 1, .type = AGENT_FRAME_EVENT };
        agent_frame_header_encode(&h, header);
        garbage_case(header, sizeof header, 0, 0, 0, "oversized frame");
        static const char *const responses[] = {
                "not json",
                "{\"Result\":5}",
                "{}",
                "{\"Result\":{},\"Error\":{\"Errno\":5}}",
                "{\"Error\":{\"Errno\":\"x\"}}",
                "{\"Error\":{\"Errno\":0}}",
                "{\"Error\":{\"Errno\":-5}}",
                "{\"Error\":{\"Errno\":5,\"Message\":7}}",
                "{\"Error\":\"EIO\"}",
                "[]",
        };
        for (size_t i = 0; i < ELEMENTSOF(responses); i++)
                garbage_case(responses[i], strlen(responses[i]), AGENT_FRAME_RESPONSE, 0, 0, responses[i]);
        /* Unparseable even when nobody waits for that id. */
        garbage_case("{", 1, AGENT_FRAME_RESPONSE, 0, 0xfffffff0u, "response to an unknown id");
        garbage_case("[1]", 3, AGENT_FRAME_EVENT, 0, 0, "event array");
        garbage_case("{\"Type\":", 8, AGENT_FRAME_EVENT, 0, 0, "truncated event");
        garbage_case("{}", 2, AGENT_FRAME_REQUEST, 0, 9, "request from the agent");
        garbage_case("12345", 5, AGENT_FRAME_DATA, 2, 0, "data beyond credit");
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_unknown_response_id_ignored) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        agent_t *a;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        fake_send_text(&f, AGENT_FRAME_RESPONSE, 12345, "{\"Result\":{}}");
        fake_send_text(&f, AGENT_FRAME_RESPONSE, 12346, "{\"Error\":{\"Errno\":2,\"Message\":\"gone\"}}");
        fake_send_hello(&f, AGENT_PROTOCOL_VERSION);
        server_t s;
        server_start(&s, &f);
        sync_echo(a, 1);
        ck_assert(agent_conn_is_alive(c));
        agent_close(a);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

/* ---- streams ---- */

typedef struct async_write {
        pthread_t thread;
        agent_t *agent;
        uint32_t stream;
        const char *data;
        int timeout_ms, r;
} async_write_t;

static void *async_write_main(void *userdata) {
        async_write_t *w = userdata;
        w->r = agent_stream_write(w->agent, w->stream, w->data, strlen(w->data), w->timeout_ms);
        return NULL;
}

static void async_write_start(async_write_t *w, agent_t *a, uint32_t stream, const char *data, int timeout_ms) {
        *w = (async_write_t){ .agent = a, .stream = stream, .data = data, .timeout_ms = timeout_ms };
        ck_assert_int_eq(pthread_create(&w->thread, NULL, async_write_main, w), 0);
}

START_TEST(test_stream_credit_and_data) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        agent_t *a, *b;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        ck_assert_int_eq(agent_conn_open(c, &b), 0);
        recorder_t rec;
        recorder_init(&rec);

        /* The agent grants Stdin credit as the stream opens, before the host opened its end. */
        fake_send_credit(&f, 7, 10);
        sync_echo(a, 1);
        ck_assert_int_eq(agent_stream_open(a, 7, on_stream_record, &rec), 0);
        ck_assert_int_eq(agent_stream_open(b, 7, NULL, NULL), -EEXIST);
        ck_assert_int_eq(agent_stream_open(a, 0, NULL, NULL), -EINVAL);
        ck_assert_int_eq(agent_stream_write(b, 7, "x", 1, 0), -EBADF);
        ck_assert_int_eq(agent_stream_credit(b, 7, 1), -EBADF);

        ck_assert_int_eq(agent_stream_write(a, 7, "abcdefghijklmno", 15, 0), 10);
        ck_assert_int_eq(agent_stream_write(a, 7, "klmno", 5, 0), -EAGAIN);
        int64_t start = now_monotonic_ns();
        ck_assert_int_eq(agent_stream_write(a, 7, "klmno", 5, 100), -EAGAIN);
        ck_assert_int_ge(elapsed_ms(start), 100);
        ck_assert_int_eq(agent_stream_write(a, 7, "", 0, 0), 0);
        /* A writer waiting for credit gets what comes. */
        async_write_t w;
        async_write_start(&w, a, 7, "klmno", -1);
        sleep_ms(50);
        fake_send_credit(&f, 7, 3);
        pthread_join(w.thread, NULL);
        ck_assert_int_eq(w.r, 3);
        _cleanup_frame_ frame_t *d1 = server_take(&s, AGENT_FRAME_DATA);
        _cleanup_frame_ frame_t *d2 = server_take(&s, AGENT_FRAME_DATA);
        ck_assert_uint_eq(d1->h.stream, 7);
        ck_assert_str_eq(d1->payload, "abcdefghij");
        ck_assert_str_eq(d2->payload, "klm");

        /* The host's credit bounds what the agent may send. */
        ck_assert_int_eq(agent_stream_credit(a, 7, 8), 0);
        ck_assert_int_eq(agent_stream_credit(a, 7, 0), 0);
        _cleanup_frame_ frame_t *cr = server_take(&s, AGENT_FRAME_CREDIT);
        ck_assert_uint_eq(cr->h.stream, 7);
        ck_assert_uint_eq(cr->h.length, 4);
        ck_assert_mem_eq(cr->payload, "\0\0\0\x08", 4);
        fake_send(&f, AGENT_FRAME_DATA, 7, 0, "1234", 4);
        fake_send(&f, AGENT_FRAME_DATA, 7, 0, "", 0);
        fake_send(&f, AGENT_FRAME_DATA, 7, 0, "5678", 4);
        fake_send(&f, AGENT_FRAME_EOF, 7, 0, NULL, 0);
        ck_assert_int_eq(recorder_wait(&rec, &rec.ends, 1), 1);
        ck_assert_int_eq(rec.end_error, 0);
        ck_assert_uint_eq(rec.data_len, 8);
        ck_assert_mem_eq(rec.data, "12345678", 8);
        ck_assert(!rec.wrong_thread);
        ck_assert_int_eq(agent_stream_credit(a, 7, 1), 0);
        ck_assert_int_eq(agent_stream_credit(a, 7, UINT32_MAX), -EOVERFLOW);
        frame_free(server_take(&s, AGENT_FRAME_CREDIT));

        /* Our EOF: the agent sees it once, writes after it fail. */
        ck_assert_int_eq(agent_stream_eof(a, 7), 0);
        ck_assert_int_eq(agent_stream_eof(a, 7), 0);
        _cleanup_frame_ frame_t *eof = server_take(&s, AGENT_FRAME_EOF);
        ck_assert_uint_eq(eof->h.stream, 7);
        ck_assert_uint_eq(eof->h.length, 0);
        ck_assert_int_eq(agent_stream_write(a, 7, "late", 4, 0), -EPIPE);

        /* Data after the agent's EOF, or for a closed stream, is dropped. */
        fake_send(&f, AGENT_FRAME_DATA, 7, 0, "zz", 2);
        agent_stream_close(a, 7);
        ck_assert_int_eq(agent_stream_write(a, 7, "x", 1, 0), -EBADF);
        fake_send(&f, AGENT_FRAME_DATA, 7, 0, "yy", 2);
        fake_send(&f, AGENT_FRAME_DATA, 99, 0, "yy", 2);
        sync_echo(a, 2);
        ck_assert(agent_conn_is_alive(c));
        ck_assert_uint_eq(rec.data_len, 8);

        /* Now b may take the id. */
        ck_assert_int_eq(agent_stream_open(b, 7, NULL, NULL), 0);
        agent_stream_close(b, 7);

        agent_close(a);
        agent_close(b);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        recorder_done(&rec);
        LEAK_CHECK_END;
}
END_TEST

START_TEST(test_stream_early_eof_and_wakeups) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        agent_t *a;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        recorder_t rec;
        recorder_init(&rec);

        /* A process that ended before anyone attached: its EOF comes before the open, and is delivered
         * on the I/O thread after it. */
        fake_send(&f, AGENT_FRAME_EOF, 9, 0, NULL, 0);
        sync_echo(a, 1);
        ck_assert_int_eq(agent_stream_open(a, 9, on_stream_record, &rec), 0);
        ck_assert_int_eq(recorder_wait(&rec, &rec.ends, 1), 1);
        ck_assert_int_eq(rec.end_error, 0);
        ck_assert(!rec.wrong_thread);
        agent_stream_close(a, 9);

        /* Blocked writers wake on stream close, EOF and cancel. */
        ck_assert_int_eq(agent_stream_open(a, 11, NULL, NULL), 0);
        async_write_t w;
        async_write_start(&w, a, 11, "x", -1);
        sleep_ms(50);
        agent_stream_close(a, 11);
        pthread_join(w.thread, NULL);
        ck_assert_int_eq(w.r, -EBADF);

        ck_assert_int_eq(agent_stream_open(a, 12, NULL, NULL), 0);
        async_write_start(&w, a, 12, "x", -1);
        sleep_ms(50);
        ck_assert_int_eq(agent_stream_eof(a, 12), 0);
        pthread_join(w.thread, NULL);
        ck_assert_int_eq(w.r, -EPIPE);

        ck_assert_int_eq(agent_stream_open(a, 13, NULL, NULL), 0);
        async_write_start(&w, a, 13, "x", LONG_MS);
        sleep_ms(50);
        agent_cancel(a);
        pthread_join(w.thread, NULL);
        ck_assert_int_eq(w.r, -ESHUTDOWN);
        ck_assert_int_eq(agent_stream_open(a, 14, NULL, NULL), -ESHUTDOWN);
        ck_assert_int_eq(agent_stream_credit(a, 13, 1), -ESHUTDOWN);

        /* Streams of a handle of another transport. */
        static const agent_ops_t other_ops = { 0 };
        agent_t other = { .ops = &other_ops };
        ck_assert_int_eq(agent_stream_open(&other, 1, NULL, NULL), -EOPNOTSUPP);
        ck_assert_int_eq(agent_stream_write(&other, 1, "x", 1, 0), -EOPNOTSUPP);
        agent_stream_close(&other, 1);

        /* Closing the handle drops its open streams. */
        agent_close(a);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        recorder_done(&rec);
        LEAK_CHECK_END;
}
END_TEST

/* Many unopened streams the agent mentions stay bounded; the newest are kept. */
START_TEST(test_stream_unopened_bounded) {
        LEAK_CHECK_BEGIN;
        fake_t f;
        agent_conn_t *c = connect_fake(&f);
        server_t s;
        server_start(&s, &f);
        agent_t *a;
        ck_assert_int_eq(agent_conn_open(c, &a), 0);
        for (uint32_t id = 1; id <= 2000; id++)
                fake_send_credit(&f, id, 5);
        sync_echo(a, 1);
        ck_assert_int_eq(agent_stream_open(a, 2000, NULL, NULL), 0);
        ck_assert_int_eq(agent_stream_write(a, 2000, "123456", 6, 0), 5);
        ck_assert_int_eq(agent_stream_open(a, 1, NULL, NULL), 0);
        ck_assert_int_eq(agent_stream_write(a, 1, "123456", 6, 0), -EAGAIN);
        agent_close(a);
        agent_conn_unref(c);
        server_stop(&s);
        fake_done(&f);
        LEAK_CHECK_END;
}
END_TEST

static Suite *agent_client_suite(void) {
        Suite *s = suite_create("agent_client");
        TCase *tc = tcase_create("handshake");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_handshake);
        tcase_add_test(tc, test_handshake_slow_guest);
        tcase_add_test(tc, test_handshake_version_mismatch);
        tcase_add_test(tc, test_handshake_skips_to_hello);
        tcase_add_test(tc, test_handshake_timeout_and_eof);
        tcase_add_test(tc, test_connect_path);
        suite_add_tcase(s, tc);

        tc = tcase_create("calls");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_concurrent_calls_out_of_order);
        tcase_add_test(tc, test_call_params_and_errors);
        tcase_add_test(tc, test_cancel_wakes_only_its_handle);
        tcase_add_test(tc, test_cancel_withdraws_unsent_request);
        suite_add_tcase(s, tc);

        tc = tcase_create("events");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_events_to_every_handler);
        tcase_add_test(tc, test_close_waits_for_delivery);
        tcase_add_test(tc, test_close_from_handler);
        tcase_add_test(tc, test_events_close_race);
        suite_add_tcase(s, tc);

        tc = tcase_create("failures");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_disconnect_mid_call);
        tcase_add_test(tc, test_protocol_garbage);
        tcase_add_test(tc, test_unknown_response_id_ignored);
        suite_add_tcase(s, tc);

        tc = tcase_create("streams");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_stream_credit_and_data);
        tcase_add_test(tc, test_stream_early_eof_and_wakeups);
        tcase_add_test(tc, test_stream_unopened_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        log_set_level(getenv("KATAD_TEST_LOG") ? LOG_DEBUG : LOG_CRIT);
        SRunner *sr = srunner_create(agent_client_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
