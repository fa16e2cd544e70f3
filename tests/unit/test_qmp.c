/* Unit tests for vmm/qmp.c against a fake monitor, in the manner of libvirt's
 * qemumonitortestutils: the test holds the monitor's end of a socketpair and either answers by
 * hand (to control order, timing and partial writes) or lets a scripted monitor thread answer each
 * command with a canned reply. The client runs on a libevent loop thread as in katad. */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "macro.h"
#include "util.h"
#include "vmm/qmp.h"

#define GREETING                                                                                                       \
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian\"}, "   \
        "\"capabilities\": [\"oob\"]}}\r\n"

/* ---- the loop thread and the event recorder ---- */

typedef struct recorded_event {
        char name[64];
        char *data; /* compact JSON */
} recorded_event_t;

typedef struct fixture {
        struct event_base *loop;
        pthread_t loop_thread;
        int monitor_fd; /* the fake monitor's end */
        int client_fd;  /* handed to the client */
        qmp_client_t *q;

        pthread_mutex_t lock;
        pthread_cond_t changed;
        recorded_event_t events[64];
        size_t n_events;
        int deadlock_probe; /* result of qmp_call issued inside the event callback */
} fixture_t;

static fixture_t fx;

static void *loop_main(void *userdata) {
        event_base_loop(userdata, EVLOOP_NO_EXIT_ON_EMPTY);
        return NULL;
}

static void on_stop_loop(evutil_socket_t fd, short what, void *userdata) {
        event_base_loopbreak(userdata);
}

/* Stops the loop thread; an activated event survives a loop that has not started yet, where a bare
 * event_base_loopbreak would be forgotten. */
static void stop_loop(void) {
        struct event *stop = event_new(fx.loop, -1, 0, on_stop_loop, fx.loop);
        ck_assert_ptr_nonnull(stop);
        event_active(stop, 0, 0);
        pthread_join(fx.loop_thread, NULL);
        event_free(stop);
}

static void on_event(qmp_client_t *q, const char *event, json_t *data, void *userdata) {
        fixture_t *f = userdata;
        if (streq(event, "PROBE_DEADLOCK"))
                f->deadlock_probe = qmp_call(q, "query-status", NULL, NULL, 1000);
        pthread_mutex_lock(&f->lock);
        if (f->n_events < ELEMENTSOF(f->events)) {
                recorded_event_t *e = &f->events[f->n_events++];
                snprintf(e->name, sizeof e->name, "%s", event);
                e->data = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
        }
        pthread_cond_broadcast(&f->changed);
        pthread_mutex_unlock(&f->lock);
}

static void setup(void) {
        signal(SIGPIPE, SIG_IGN);
        ck_assert_int_eq(evthread_use_pthreads(), 0);
        memset(&fx, 0, sizeof fx);
        pthread_mutex_init(&fx.lock, NULL);
        pthread_cond_init(&fx.changed, NULL);
        fx.deadlock_probe = 1;
        fx.loop = event_base_new();
        ck_assert_ptr_nonnull(fx.loop);
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        fx.monitor_fd = sv[0];
        fx.client_fd = sv[1];
        ck_assert_int_eq(pthread_create(&fx.loop_thread, NULL, loop_main, fx.loop), 0);
}

static void teardown(void) {
        qmp_client_close(TAKE_PTR(fx.q));
        if (fx.monitor_fd >= 0)
                close(fx.monitor_fd);
        stop_loop();
        event_base_free(fx.loop);
        for (size_t i = 0; i < fx.n_events; i++)
                free(fx.events[i].data);
}

static void start_client(void) {
        ck_assert_int_eq(qmp_client_new(fx.loop, fx.client_fd, on_event, &fx, &fx.q), 0);
}

/* Waits until at least n events were recorded; returns how many there are. */
static size_t wait_events(size_t n, int timeout_ms) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&fx.lock);
        while (fx.n_events < n)
                if (pthread_cond_timedwait(&fx.changed, &fx.lock, &deadline) == ETIMEDOUT)
                        break;
        size_t got = fx.n_events;
        pthread_mutex_unlock(&fx.lock);
        return got;
}

/* ---- the fake monitor, driven by hand ---- */

static void mon_send(const char *s) {
        size_t len = strlen(s);
        ck_assert_int_eq(write(fx.monitor_fd, s, len), (ssize_t) len);
}

/* Reads one command line from the client; returns it parsed, with its id in *ret_id. */
static json_t *mon_read_command(json_int_t *ret_id) {
        char line[65536];
        size_t len = 0;
        for (;;) {
                struct pollfd pfd = {.fd = fx.monitor_fd, .events = POLLIN};
                ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
                ssize_t n = read(fx.monitor_fd, line + len, 1);
                ck_assert_int_eq(n, 1);
                if (line[len] == '\n')
                        break;
                len++;
                ck_assert(len < sizeof line);
        }
        json_error_t err;
        json_t *cmd = json_loadb(line, len, 0, &err);
        ck_assert_msg(cmd != NULL, "client sent bad JSON: %s", err.text);
        ck_assert(json_is_string(json_object_get(cmd, "execute")));
        ck_assert(json_is_integer(json_object_get(cmd, "id")));
        *ret_id = json_integer_value(json_object_get(cmd, "id"));
        return cmd;
}

static void mon_expect(const char *command, json_int_t *ret_id) {
        _cleanup_json_ json_t *cmd = mon_read_command(ret_id);
        ck_assert_str_eq(json_get_string(cmd, "execute"), command);
}

static void mon_reply(json_int_t id, const char *ret_json) {
        char buf[4096];
        snprintf(buf, sizeof buf, "{\"return\": %s, \"id\": %lld}\r\n", ret_json, (long long) id);
        mon_send(buf);
}

static void mon_handshake(void) {
        json_int_t id;
        mon_send(GREETING);
        mon_expect("qmp_capabilities", &id);
        mon_reply(id, "{}");
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), 0);
}

/* ---- the fake monitor, scripted: canned replies per command, answered by a thread ---- */

typedef struct canned {
        const char *command;
        const char *reply; /* the reply object without "id"; "@" expands to the command's arguments */
} canned_t;

typedef struct script {
        const canned_t *table;
        size_t n;
        int fd;
} script_t;

static void *script_main(void *userdata) {
        script_t *s = userdata;
        FILE *in = fdopen(dup(s->fd), "r");
        if (!in)
                return NULL;
        if (write(s->fd, GREETING, strlen(GREETING)) < 0)
                goto out;
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, in) > 0) {
                _cleanup_json_ json_t *cmd = json_loads(line, 0, NULL);
                const char *execute = json_get_string(cmd, "execute");
                json_t *id = json_object_get(cmd, "id");
                _cleanup_json_ json_t *reply = NULL;
                if (execute && streq(execute, "qmp_capabilities"))
                        reply = json_pack("{s:{}}", "return");
                for (size_t i = 0; !reply && execute && i < s->n; i++)
                        if (streq(s->table[i].command, execute)) {
                                if (streq(s->table[i].reply, "@"))
                                        reply = json_pack("{s:O?}", "return", json_object_get(cmd, "arguments"));
                                else
                                        reply = json_loads(s->table[i].reply, 0, NULL);
                        }
                if (!reply)
                        reply = json_pack("{s:{s:s, s:s}}", "error", "class", "CommandNotFound", "desc",
                                          "The command is not canned");
                if (id)
                        json_object_set(reply, "id", id);
                _cleanup_free_ char *out = json_dumps(reply, JSON_COMPACT);
                if (!out || dprintf(s->fd, "%s\r\n", out) < 0)
                        break;
        }
        free(line);
out:
        fclose(in);
        return NULL;
}

static pthread_t script_start(script_t *s) {
        s->fd = fx.monitor_fd;
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, script_main, s), 0);
        return t;
}

static void script_stop(pthread_t t) {
        shutdown(fx.monitor_fd, SHUT_RDWR);
        pthread_join(t, NULL);
}

/* ---- async reply recorder ---- */

typedef struct reply {
        int r;
        bool done;
        char *result;
        qmp_error_t error;
        int order;
} reply_t;

static int reply_counter;

static void on_reply(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata) {
        reply_t *rep = userdata;
        pthread_mutex_lock(&fx.lock);
        rep->r = r;
        rep->result = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (error)
                rep->error = *error;
        rep->order = ++reply_counter;
        rep->done = true;
        pthread_cond_broadcast(&fx.changed);
        pthread_mutex_unlock(&fx.lock);
}

static void wait_reply(reply_t *rep) {
        for (int i = 0; i < 500; i++) {
                pthread_mutex_lock(&fx.lock);
                bool done = rep->done;
                pthread_mutex_unlock(&fx.lock);
                if (done)
                        return;
                usleep(10000);
        }
        ck_abort_msg("no reply");
}

/* ---- tests ---- */

START_TEST(test_state_names) {
        ck_assert_str_eq(qmp_state_to_string(QMP_STATE_GREETING), "greeting");
        ck_assert_str_eq(qmp_state_to_string(QMP_STATE_CAPABILITIES), "capabilities");
        ck_assert_str_eq(qmp_state_to_string(QMP_STATE_READY), "ready");
        ck_assert_str_eq(qmp_state_to_string(QMP_STATE_DISCONNECTED), "disconnected");
        ck_assert_ptr_null(qmp_state_to_string(_QMP_STATE_MAX));
}
END_TEST

START_TEST(test_handshake_states) {
        start_client();
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_GREETING);
        ck_assert_uint_eq(qmp_client_get_version(fx.q), 0);
        mon_send(GREETING);
        json_int_t id;
        mon_expect("qmp_capabilities", &id);
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_CAPABILITIES);
        ck_assert_uint_eq(qmp_client_get_version(fx.q), 70222);
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 50), -ETIMEDOUT);
        mon_reply(id, "{}");
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), 0);
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_READY);
}
END_TEST

START_TEST(test_no_greeting_times_out) {
        start_client();
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 100), -ETIMEDOUT);
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_GREETING);
}
END_TEST

START_TEST(test_not_a_greeting) {
        start_client();
        mon_send("{\"return\": {}}\r\n");
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), -EPROTO);
        ck_assert_int_eq(wait_events(1, 5000), 1);
        ck_assert_str_eq(fx.events[0].name, "SHUTDOWN");
}
END_TEST

START_TEST(test_capabilities_refused) {
        start_client();
        mon_send(GREETING);
        json_int_t id;
        mon_expect("qmp_capabilities", &id);
        char buf[256];
        snprintf(buf, sizeof buf, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": %lld}\n",
                 (long long) id);
        mon_send(buf);
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), -EPROTO);
}
END_TEST

START_TEST(test_canned_replies) {
        static const canned_t table[] = {
                {"query-status", "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}"},
                {"query-cpus-fast", "{\"return\": [{\"cpu-index\": 0}, {\"cpu-index\": 1}]}"},
                {"echo", "@"},
        };
        script_t s = {.table = table, .n = ELEMENTSOF(table)};
        pthread_t t = script_start(&s);
        start_client();
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), 0);

        json_t *ret = NULL;
        ck_assert_int_eq(qmp_call(fx.q, "query-status", NULL, &ret, 5000), 0);
        ck_assert_str_eq(json_get_string(ret, "status"), "running");
        json_decref(ret);

        ck_assert_int_eq(qmp_call(fx.q, "query-cpus-fast", NULL, &ret, 5000), 0);
        ck_assert(json_is_array(ret));
        ck_assert_uint_eq(json_array_size(ret), 2);
        json_decref(ret);

        ck_assert_int_eq(qmp_call(fx.q, "echo", json_pack("{s:s, s:i}", "a", "b", "n", 7), &ret, 5000), 0);
        ck_assert_int_eq(json_get_int(ret, "n", 0), 7);
        json_decref(ret);

        /* A result the caller does not want is fine. */
        ck_assert_int_eq(qmp_call(fx.q, "query-status", NULL, NULL, 5000), 0);

        qmp_error_t e;
        ck_assert_int_eq(qmp_call_full(fx.q, "no-such-command", NULL, 5000, NULL, &e), -EREMOTEIO);
        ck_assert_str_eq(e.class_name, "CommandNotFound");
        ck_assert_str_eq(e.desc, "The command is not canned");
        ck_assert_int_eq(qmp_call(fx.q, "no-such-command", NULL, NULL, 5000), -EREMOTEIO);

        /* Still usable after an error. */
        ck_assert_int_eq(qmp_call(fx.q, "query-status", NULL, NULL, 5000), 0);
        script_stop(t);
}
END_TEST

START_TEST(test_bad_arguments) {
        start_client();
        ck_assert_int_eq(qmp_call_async(fx.q, "x", json_string("not an object"), on_reply, NULL), -EINVAL);
        ck_assert_int_eq(qmp_call_async(fx.q, "", NULL, on_reply, NULL), -EINVAL);
        ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(qmp_call(NULL, "x", json_object(), NULL, 10), -EINVAL);
}
END_TEST

START_TEST(test_out_of_order) {
        start_client();
        mon_handshake();
        reply_t a = {0}, b = {0}, c = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "first", NULL, on_reply, &a), 0);
        ck_assert_int_eq(qmp_call_async(fx.q, "second", NULL, on_reply, &b), 0);
        ck_assert_int_eq(qmp_call_async(fx.q, "third", NULL, on_reply, &c), 0);
        json_int_t ia, ib, ic;
        mon_expect("first", &ia);
        mon_expect("second", &ib);
        mon_expect("third", &ic);
        ck_assert(ia != ib && ib != ic && ia != ic);
        mon_reply(ic, "\"c\"");
        mon_reply(ia, "\"a\"");
        mon_reply(ib, "\"b\"");
        wait_reply(&a);
        wait_reply(&b);
        wait_reply(&c);
        ck_assert_str_eq(a.result, "\"a\"");
        ck_assert_str_eq(b.result, "\"b\"");
        ck_assert_str_eq(c.result, "\"c\"");
        ck_assert_int_eq(c.order, 1);
        ck_assert_int_eq(a.order, 2);
        ck_assert_int_eq(b.order, 3);
        free(a.result);
        free(b.result);
        free(c.result);
}
END_TEST

START_TEST(test_error_reply) {
        start_client();
        mon_handshake();
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "device_del", json_pack("{s:s}", "id", "nope"), on_reply, &a), 0);
        json_int_t id;
        mon_expect("device_del", &id);
        char buf[512];
        snprintf(
                buf, sizeof buf,
                "{\"id\": %lld, \"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'nope' not found\"}}\r\n",
                (long long) id);
        mon_send(buf);
        wait_reply(&a);
        ck_assert_int_eq(a.r, -EREMOTEIO);
        ck_assert_ptr_null(a.result);
        ck_assert_str_eq(a.error.class_name, "DeviceNotFound");
        ck_assert_str_eq(a.error.desc, "Device 'nope' not found");

        /* A malformed error still fails the command as a QMP error. */
        reply_t b = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, on_reply, &b), 0);
        mon_expect("x", &id);
        snprintf(buf, sizeof buf, "{\"id\": %lld, \"error\": 42}\n", (long long) id);
        mon_send(buf);
        wait_reply(&b);
        ck_assert_int_eq(b.r, -EREMOTEIO);
        ck_assert_str_eq(b.error.class_name, "GenericError");
}
END_TEST

START_TEST(test_events_interleaved) {
        start_client();
        mon_handshake();
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "stop", NULL, on_reply, &a), 0);
        json_int_t id;
        mon_expect("stop", &id);
        char buf[1024];
        snprintf(buf, sizeof buf,
                 "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                 "{\"return\": {}, \"id\": %lld}\r\n"
                 "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"DEVICE_DELETED\", "
                 "\"data\": {\"device\": \"rp1\", \"path\": \"/machine/peripheral/rp1\"}}\r\n",
                 (long long) id);
        mon_send(buf);
        wait_reply(&a);
        ck_assert_int_eq(a.r, 0);
        ck_assert_int_eq(wait_events(2, 5000), 2);
        ck_assert_str_eq(fx.events[0].name, "STOP");
        ck_assert_str_eq(fx.events[0].data, "{}");
        ck_assert_str_eq(fx.events[1].name, "DEVICE_DELETED");
        ck_assert_str_eq(fx.events[1].data, "{\"device\":\"rp1\",\"path\":\"/machine/peripheral/rp1\"}");
        free(a.result);
}
END_TEST

START_TEST(test_partial_lines) {
        start_client();
        /* The greeting and everything after it arrive one byte at a time. */
        for (const char *p = GREETING; *p; p++) {
                char one[2] = {*p, 0};
                mon_send(one);
        }
        json_int_t id;
        mon_expect("qmp_capabilities", &id);
        char buf[256];
        snprintf(buf, sizeof buf, "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"RESUME\"}\r\n", (long long) id);
        for (const char *p = buf; *p; p++) {
                char one[2] = {*p, 0};
                mon_send(one);
                if (p == buf + 10)
                        usleep(20000);
        }
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), 0);
        ck_assert_int_eq(wait_events(1, 5000), 1);
        ck_assert_str_eq(fx.events[0].name, "RESUME");
}
END_TEST

START_TEST(test_commands_wait_for_handshake) {
        start_client();
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "query-status", NULL, on_reply, &a), 0);
        mon_send(GREETING);
        json_int_t id;
        mon_expect("qmp_capabilities", &id);
        /* Replying to the queued command before it was sent must not complete it. */
        mon_reply(id + 1, "\"too early\"");
        mon_reply(id, "{}");
        json_int_t qid;
        mon_expect("query-status", &qid);
        mon_reply(qid, "{\"status\": \"running\"}");
        wait_reply(&a);
        ck_assert_int_eq(a.r, 0);
        ck_assert_str_eq(a.result, "{\"status\":\"running\"}");
        free(a.result);
}
END_TEST

START_TEST(test_unknown_ids_and_messages_ignored) {
        start_client();
        mon_handshake();
        mon_send("{\"return\": {}, \"id\": 999}\r\n{\"return\": {}}\r\n{\"return\": {}, \"id\": \"str\"}\r\n"
                 "{\"something\": \"new\"}\r\n\r\n   \r\n{\"event\": 5}\r\n");
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, on_reply, &a), 0);
        json_int_t id;
        mon_expect("x", &id);
        mon_reply(id, "1");
        wait_reply(&a);
        ck_assert_int_eq(a.r, 0);
        ck_assert_str_eq(a.result, "1");
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_READY);
        free(a.result);
}
END_TEST

START_TEST(test_disconnect_fails_pending_and_raises_shutdown_once) {
        start_client();
        mon_handshake();
        reply_t a = {0}, b = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "one", NULL, on_reply, &a), 0);
        ck_assert_int_eq(qmp_call_async(fx.q, "two", NULL, on_reply, &b), 0);
        json_int_t id;
        mon_expect("one", &id);
        mon_send("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n");
        close(TAKE_FD(fx.monitor_fd));
        wait_reply(&a);
        wait_reply(&b);
        ck_assert_int_eq(a.r, -ECONNRESET);
        ck_assert_int_eq(b.r, -ECONNRESET);
        ck_assert_int_eq(wait_events(2, 5000), 2);
        ck_assert_str_eq(fx.events[0].name, "SHUTDOWN");
        ck_assert_str_eq(fx.events[0].data, "{\"guest\":true,\"reason\":\"guest-shutdown\"}");
        ck_assert_str_eq(fx.events[1].name, "SHUTDOWN");
        ck_assert_str_eq(fx.events[1].data, "{\"guest\":false,\"reason\":\"disconnected\",\"synthetic\":true}");
        ck_assert_int_eq(qmp_client_get_state(fx.q), QMP_STATE_DISCONNECTED);
        ck_assert_int_eq(qmp_call(fx.q, "three", NULL, NULL, 1000), -ENOTCONN);
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 10), -ECONNRESET);
        usleep(100000);
        ck_assert_int_eq(wait_events(3, 10), 2);
}
END_TEST

START_TEST(test_garbage_disconnects) {
        static const char *const garbage[] = {
                "not json at all\n",     "[1, 2, 3]\n",    "{\"return\": {}} trailing\n",
                "{\"unterminated\": \n", "\"a string\"\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                teardown();
                setup();
                start_client();
                mon_handshake();
                reply_t a = {0};
                ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, on_reply, &a), 0);
                json_int_t id;
                mon_expect("x", &id);
                mon_send(garbage[i]);
                wait_reply(&a);
                ck_assert_int_eq(a.r, -EPROTO);
                ck_assert_int_eq(wait_events(1, 5000), 1);
                ck_assert_str_eq(fx.events[0].name, "SHUTDOWN");
        }
}
END_TEST

START_TEST(test_overlong_line) {
        start_client();
        mon_handshake();
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, on_reply, &a), 0);
        json_int_t id;
        mon_expect("x", &id);
        char *junk = malloc(1 << 20);
        memset(junk, ' ', 1 << 20);
        size_t total = 0;
        while (total <= QMP_MESSAGE_MAX + (1u << 20)) {
                struct pollfd pfd = {.fd = fx.monitor_fd, .events = POLLOUT};
                if (poll(&pfd, 1, 2000) != 1)
                        break;
                ssize_t n = write(fx.monitor_fd, junk, 1 << 20);
                if (n <= 0)
                        break;
                total += (size_t) n;
        }
        free(junk);
        wait_reply(&a);
        ck_assert_int_eq(a.r, -EPROTO);
}
END_TEST

START_TEST(test_call_timeout_then_late_reply) {
        start_client();
        mon_handshake();
        ck_assert_int_eq(qmp_call(fx.q, "slow", NULL, NULL, 100), -ETIMEDOUT);
        json_int_t id;
        mon_expect("slow", &id);
        mon_reply(id, "\"late\"");
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "next", NULL, on_reply, &a), 0);
        json_int_t id2;
        mon_expect("next", &id2);
        ck_assert(id2 != id);
        mon_reply(id2, "\"next\"");
        wait_reply(&a);
        ck_assert_str_eq(a.result, "\"next\"");
        free(a.result);
}
END_TEST

START_TEST(test_call_on_loop_thread_refused) {
        start_client();
        mon_handshake();
        mon_send("{\"event\": \"PROBE_DEADLOCK\"}\r\n");
        ck_assert_int_eq(wait_events(1, 5000), 1);
        ck_assert_int_eq(fx.deadlock_probe, -EDEADLK);
}
END_TEST

START_TEST(test_close_cancels_pending_without_event) {
        start_client();
        mon_handshake();
        reply_t a = {0};
        ck_assert_int_eq(qmp_call_async(fx.q, "x", NULL, on_reply, &a), 0);
        qmp_client_close(TAKE_PTR(fx.q));
        ck_assert(a.done);
        ck_assert_int_eq(a.r, -ECANCELED);
        (void) send(fx.monitor_fd, "{\"event\": \"STOP\"}\r\n", 18, MSG_NOSIGNAL);
        usleep(100000);
        ck_assert_int_eq(wait_events(1, 10), 0);
}
END_TEST

typedef struct accept_args {
        int lfd;
        script_t *script;
} accept_args_t;

static void *accept_then_script(void *userdata) {
        accept_args_t *a = userdata;
        int fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return NULL;
        a->script->fd = fd;
        script_main(a->script);
        close(fd);
        return NULL;
}

START_TEST(test_connect_long_path) {
        char dir[4096] = "/tmp/katad-test-qmp-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char top[4096];
        snprintf(top, sizeof top, "%s", dir);
        /* Deeper than sun_path can hold. */
        for (int i = 0; i < 3; i++) {
                strcat(dir, "/0123456789012345678901234567890123456789");
                ck_assert_int_eq(mkdir(dir, 0700), 0);
        }
        char path[4200];
        snprintf(path, sizeof path, "%s/qmp.sock", dir);
        ck_assert(strlen(path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path));
        qmp_client_t *q = NULL;
        ck_assert_int_eq(qmp_client_connect(fx.loop, path, 1000, on_event, &fx, &q), -ENOENT);

        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(lfd, 0);
        ck_assert_int_eq(chdir(dir), 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "qmp.sock"};
        ck_assert_int_eq(bind(lfd, (struct sockaddr *) &sa, sizeof sa), 0);
        ck_assert_int_eq(listen(lfd, 1), 0);

        /* Someone listens but nobody greets. */
        ck_assert_int_eq(qmp_client_connect(fx.loop, path, 100, on_event, &fx, &q), -ETIMEDOUT);
        int stale = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ck_assert_int_ge(stale, 0);
        close(stale);

        static const canned_t table[] = {{"query-status", "{\"return\": {\"status\": \"paused\"}}"}};
        script_t s = {.table = table, .n = 1};
        accept_args_t args = {.lfd = lfd, .script = &s};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, accept_then_script, &args), 0);
        ck_assert_int_eq(qmp_client_connect(fx.loop, path, 5000, on_event, &fx, &q), 0);
        json_t *ret = NULL;
        ck_assert_int_eq(qmp_call(q, "query-status", NULL, &ret, 5000), 0);
        ck_assert_str_eq(json_get_string(ret, "status"), "paused");
        json_decref(ret);
        qmp_client_close(q);
        pthread_join(t, NULL);
        close(lfd);
        ck_assert_int_eq(chdir("/"), 0);
        ck_assert_int_eq(rm_rf(top), 0);
}
END_TEST

enum { CALLERS = 8, CALLS_PER_CALLER = 200 };

static void *caller_main(void *userdata) {
        long me = (long) userdata;
        for (int i = 0; i < CALLS_PER_CALLER; i++) {
                json_t *ret = NULL;
                if (qmp_call(fx.q, "echo", json_pack("{s:i, s:i}", "caller", (int) me, "i", i), &ret, 5000) < 0)
                        return (void *) 1;
                bool ok = json_get_int(ret, "caller", -1) == me && json_get_int(ret, "i", -1) == i;
                json_decref(ret);
                if (!ok)
                        return (void *) 2;
        }
        return NULL;
}

START_TEST(test_many_concurrent_sync_callers) {
        static const canned_t table[] = {{"echo", "@"}};
        script_t s = {.table = table, .n = 1};
        pthread_t t = script_start(&s);
        start_client();
        ck_assert_int_eq(qmp_client_wait_ready(fx.q, 5000), 0);
        pthread_t callers[CALLERS];
        for (long i = 0; i < CALLERS; i++)
                ck_assert_int_eq(pthread_create(&callers[i], NULL, caller_main, (void *) i), 0);
        for (int i = 0; i < CALLERS; i++) {
                void *failures;
                pthread_join(callers[i], &failures);
                ck_assert_ptr_null(failures);
        }
        script_stop(t);
}
END_TEST

static Suite *qmp_suite(void) {
        Suite *s = suite_create("qmp");
        TCase *tc = tcase_create("client");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_state_names);
        tcase_add_test(tc, test_handshake_states);
        tcase_add_test(tc, test_no_greeting_times_out);
        tcase_add_test(tc, test_not_a_greeting);
        tcase_add_test(tc, test_capabilities_refused);
        tcase_add_test(tc, test_canned_replies);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_out_of_order);
        tcase_add_test(tc, test_error_reply);
        tcase_add_test(tc, test_events_interleaved);
        tcase_add_test(tc, test_partial_lines);
        tcase_add_test(tc, test_commands_wait_for_handshake);
        tcase_add_test(tc, test_unknown_ids_and_messages_ignored);
        tcase_add_test(tc, test_disconnect_fails_pending_and_raises_shutdown_once);
        tcase_add_test(tc, test_garbage_disconnects);
        tcase_add_test(tc, test_overlong_line);
        tcase_add_test(tc, test_call_timeout_then_late_reply);
        tcase_add_test(tc, test_call_on_loop_thread_refused);
        tcase_add_test(tc, test_close_cancels_pending_without_event);
        tcase_add_test(tc, test_connect_long_path);
        tcase_add_test(tc, test_many_concurrent_sync_callers);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(qmp_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
