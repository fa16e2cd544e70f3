/* The QMP client (see qmp.h): the handshake state machine, the table of pending commands, the
 * line reader that turns monitor output into messages, and the synchronous wrapper. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "qmp.h"

/* How long a writer waits for the socket to take a command before the connection counts as dead. */
#define QMP_WRITE_TIMEOUT_MS 5000
#define QMP_READ_CHUNK 65536

typedef struct qmp_pending {
        struct qmp_pending *next;
        uint64_t id;
        char *unsent; /* the serialized command while it waits for the handshake; NULL once written */
        size_t unsent_len;
        qmp_reply_cb cb;
        void *userdata;
} qmp_pending_t;

struct qmp_client {
        unsigned n_ref;       /* atomic */
        pthread_mutex_t lock; /* state, pending, next_id, version, loop_thread */
        pthread_cond_t state_changed;
        pthread_mutex_t write_lock; /* one writer on fd at a time */
        struct event_base *loop;
        struct event *read_event;
        int fd;

        qmp_state_t state;
        int disconnect_error;
        bool closed;
        bool shutdown_raised;
        bool loop_thread_known;
        pthread_t loop_thread;
        unsigned version;
        uint64_t next_id;
        qmp_pending_t *pending; /* in order of issue */

        /* Owned by the loop thread. */
        char *buf;
        size_t len, cap;

        qmp_event_cb on_event;
        void *userdata;
};

static const char *const state_names[_QMP_STATE_MAX] = {
        [QMP_STATE_GREETING] = "greeting",
        [QMP_STATE_CAPABILITIES] = "capabilities",
        [QMP_STATE_READY] = "ready",
        [QMP_STATE_DISCONNECTED] = "disconnected",
};

const char *qmp_state_to_string(qmp_state_t state) {
        if (state < 0 || state >= _QMP_STATE_MAX)
                return NULL;
        return state_names[state];
}

qmp_client_t *qmp_client_ref(qmp_client_t *q) {
        if (q)
                __atomic_add_fetch(&q->n_ref, 1, __ATOMIC_RELAXED);
        return q;
}

static void pending_free(qmp_pending_t *p) {
        if (!p)
                return;
        free(p->unsent);
        free(p);
}

void qmp_client_unref(qmp_client_t *q) {
        if (!q || __atomic_sub_fetch(&q->n_ref, 1, __ATOMIC_ACQ_REL) > 0)
                return;
        if (q->read_event)
                event_free(q->read_event);
        while (q->pending) {
                qmp_pending_t *p = q->pending;
                q->pending = p->next;
                pending_free(p);
        }
        if (q->fd >= 0)
                close(q->fd);
        free(q->buf);
        pthread_cond_destroy(&q->state_changed);
        pthread_mutex_destroy(&q->write_lock);
        pthread_mutex_destroy(&q->lock);
        free(q);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(qmp_client_t *, qmp_client_unref);

static void deadline_after(int timeout_ms, struct timespec *ret) {
        clock_gettime(CLOCK_MONOTONIC, ret);
        ret->tv_sec += timeout_ms / 1000;
        ret->tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (ret->tv_nsec >= 1000000000L) {
                ret->tv_sec++;
                ret->tv_nsec -= 1000000000L;
        }
}

static int cond_init_monotonic(pthread_cond_t *c) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        int r = -pthread_cond_init(c, &attr);
        pthread_condattr_destroy(&attr);
        return r;
}

/* Writes all of data, waiting at most QMP_WRITE_TIMEOUT_MS for room. A failure shuts the socket
 * down so that the loop thread notices and fails every pending command. */
static int write_all(qmp_client_t *q, const char *data, size_t len) {
        int r = 0;
        pthread_mutex_lock(&q->write_lock);
        size_t off = 0;
        while (off < len) {
                ssize_t n = send(q->fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        off += (size_t) n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        struct pollfd pfd = {.fd = q->fd, .events = POLLOUT};
                        int k = poll(&pfd, 1, QMP_WRITE_TIMEOUT_MS);
                        if (k > 0)
                                continue;
                        if (k < 0 && errno == EINTR)
                                continue;
                        r = k == 0 ? -ETIMEDOUT : -errno;
                        break;
                }
                r = n < 0 ? -errno : -EIO;
                break;
        }
        if (r < 0)
                (void) shutdown(q->fd, SHUT_RDWR);
        pthread_mutex_unlock(&q->write_lock);
        return r;
}

/* Ends the connection: the state becomes DISCONNECTED, every pending command fails with error and,
 * when raise_event is set and the owner has not closed the client, one synthetic SHUTDOWN is
 * delivered. Runs on the loop thread, or on the closing thread (raise_event false). */
static void disconnect(qmp_client_t *q, int error, bool raise_event) {
        pthread_mutex_lock(&q->lock);
        if (q->state == QMP_STATE_DISCONNECTED) {
                pthread_mutex_unlock(&q->lock);
                return;
        }
        log_debug("QMP connection ends in state %s: %s", qmp_state_to_string(q->state), strerror(-error));
        q->state = QMP_STATE_DISCONNECTED;
        q->disconnect_error = error;
        qmp_pending_t *pending = TAKE_PTR(q->pending);
        bool raise = raise_event && !q->closed && !q->shutdown_raised;
        if (raise)
                q->shutdown_raised = true;
        pthread_cond_broadcast(&q->state_changed);
        pthread_mutex_unlock(&q->lock);

        /* On the loop thread this cannot block; the closing thread has deleted the event already. */
        event_del(q->read_event);
        (void) shutdown(q->fd, SHUT_RDWR);
        while (pending) {
                qmp_pending_t *p = pending;
                pending = p->next;
                p->cb(q, error, NULL, NULL, p->userdata);
                pending_free(p);
        }
        if (raise && q->on_event) {
                _cleanup_json_ json_t *data =
                        json_pack("{s:b, s:s, s:b}", "guest", 0, "reason", "disconnected", "synthetic", 1);
                q->on_event(q, "SHUTDOWN", data ? data : json_object(), q->userdata);
        }
}

static void on_capabilities(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata) {
        if (r < 0) {
                if (r == -EREMOTEIO)
                        log_debug("QMP qmp_capabilities failed: %s: %s", error->class_name, error->desc);
                disconnect(q, r == -EREMOTEIO ? -EPROTO : r, true);
                return;
        }
        /* Commands issued during the handshake are written now, in the order they were issued. */
        pthread_mutex_lock(&q->lock);
        if (q->state != QMP_STATE_CAPABILITIES) {
                pthread_mutex_unlock(&q->lock);
                return;
        }
        q->state = QMP_STATE_READY;
        size_t n = 0;
        for (qmp_pending_t *p = q->pending; p; p = p->next)
                if (p->unsent)
                        n++;
        char **lines = n ? calloc(n, sizeof *lines) : NULL;
        size_t *lens = n ? calloc(n, sizeof *lens) : NULL;
        if (n && (!lines || !lens)) {
                free(lines);
                free(lens);
                pthread_mutex_unlock(&q->lock);
                disconnect(q, -ENOMEM, true);
                return;
        }
        size_t i = 0;
        for (qmp_pending_t *p = q->pending; p; p = p->next)
                if (p->unsent) {
                        lens[i] = p->unsent_len;
                        lines[i++] = TAKE_PTR(p->unsent);
                }
        pthread_cond_broadcast(&q->state_changed);
        pthread_mutex_unlock(&q->lock);

        int w = 0;
        for (i = 0; i < n; i++) {
                if (w >= 0)
                        w = write_all(q, lines[i], lens[i]);
                free(lines[i]);
        }
        free(lines);
        free(lens);
}

/* Registers a command and returns its serialized line (to write) through ret_line, or NULL in
 * *ret_line when it waits for the handshake. */
static int pending_add(qmp_client_t *q, const char *command, json_t *args, qmp_reply_cb cb, void *userdata,
                       char **ret_line, size_t *ret_len) {
        _cleanup_free_ qmp_pending_t *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        pthread_mutex_lock(&q->lock);
        if (q->state == QMP_STATE_DISCONNECTED) {
                int r = q->closed ? -ECANCELED : -ENOTCONN;
                pthread_mutex_unlock(&q->lock);
                return r;
        }
        p->id = ++q->next_id;
        _cleanup_json_ json_t *msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t) p->id);
        if (msg && args && json_object_set(msg, "arguments", args) < 0)
                json_decref(TAKE_PTR(msg));
        char *dump = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        size_t len = dump ? strlen(dump) : 0;
        char *line = dump ? realloc(dump, len + 2) : NULL;
        if (!line) {
                free(dump);
                pthread_mutex_unlock(&q->lock);
                return -ENOMEM;
        }
        line[len++] = '\n';
        line[len] = 0;
        p->cb = cb;
        p->userdata = userdata;
        /* capabilities is the one command that may go out before the handshake is done. */
        bool now = q->state == QMP_STATE_READY || streq(command, "qmp_capabilities");
        if (!now) {
                p->unsent = line;
                p->unsent_len = len;
        }
        qmp_pending_t **tail = &q->pending;
        while (*tail)
                tail = &(*tail)->next;
        *tail = TAKE_PTR(p);
        pthread_mutex_unlock(&q->lock);
        *ret_line = now ? line : NULL;
        *ret_len = now ? len : 0;
        return 0;
}

static int call_async(qmp_client_t *q, const char *command, json_t *args, qmp_reply_cb cb, void *userdata) {
        _cleanup_free_ char *line = NULL;
        size_t len = 0;
        int r = pending_add(q, command, args, cb, userdata, &line, &len);
        if (r < 0)
                return r;
        /* A failed write shuts the socket down; the loop thread then fails this command with the rest. */
        if (line)
                (void) write_all(q, line, len);
        return 0;
}

int qmp_call_async(qmp_client_t *q, const char *command, json_t *args, qmp_reply_cb cb, void *userdata) {
        int r = -EINVAL;
        if (q && !strempty(command) && cb && (!args || json_is_object(args)))
                r = call_async(q, command, args, cb, userdata);
        json_decref(args);
        return r;
}

static int handle_greeting(qmp_client_t *q, json_t *msg) {
        json_t *qmp = json_get_object(msg, "QMP");
        if (!qmp)
                return -EPROTO;
        json_t *qemu = json_get_object(json_get_object(qmp, "version"), "qemu");
        json_int_t major = json_get_int(qemu, "major", 0), minor = json_get_int(qemu, "minor", 0),
                   micro = json_get_int(qemu, "micro", 0);
        pthread_mutex_lock(&q->lock);
        if (major >= 0 && major < 1000 && minor >= 0 && minor < 100 && micro >= 0 && micro < 100)
                q->version = (unsigned) (major * 10000 + minor * 100 + micro);
        q->state = QMP_STATE_CAPABILITIES;
        pthread_cond_broadcast(&q->state_changed);
        pthread_mutex_unlock(&q->lock);
        return qmp_call_async(q, "qmp_capabilities", NULL, on_capabilities, NULL);
}

static qmp_pending_t *pending_take(qmp_client_t *q, json_t *id) {
        if (!json_is_integer(id))
                return NULL;
        json_int_t want = json_integer_value(id);
        pthread_mutex_lock(&q->lock);
        qmp_pending_t *found = NULL;
        for (qmp_pending_t **p = &q->pending; *p; p = &(*p)->next)
                if ((json_int_t) (*p)->id == want && !(*p)->unsent) {
                        found = *p;
                        *p = found->next;
                        break;
                }
        pthread_mutex_unlock(&q->lock);
        return found;
}

static void handle_reply(qmp_client_t *q, json_t *msg) {
        qmp_pending_t *p = pending_take(q, json_object_get(msg, "id"));
        if (!p) {
                log_debug("QMP reply to no pending command, ignored");
                return;
        }
        json_t *result = json_object_get(msg, "return");
        if (result) {
                p->cb(q, 0, result, NULL, p->userdata);
        } else {
                json_t *err = json_object_get(msg, "error");
                const char *cls = json_get_string(err, "class"), *desc = json_get_string(err, "desc");
                qmp_error_t e;
                snprintf(e.class_name, sizeof e.class_name, "%s", cls ? cls : "GenericError");
                snprintf(e.desc, sizeof e.desc, "%s", desc ? desc : "malformed error reply");
                p->cb(q, -EREMOTEIO, NULL, &e, p->userdata);
        }
        pending_free(p);
}

/* One message from the monitor. Returns negative errno when the connection cannot go on. */
static int handle_message(qmp_client_t *q, json_t *msg) {
        if (!json_is_object(msg))
                return -EPROTO;
        pthread_mutex_lock(&q->lock);
        qmp_state_t state = q->state;
        pthread_mutex_unlock(&q->lock);
        if (state == QMP_STATE_DISCONNECTED)
                return 0;
        if (state == QMP_STATE_GREETING)
                return handle_greeting(q, msg);
        if (json_object_get(msg, "return") || json_object_get(msg, "error")) {
                handle_reply(q, msg);
                return 0;
        }
        const char *event = json_get_string(msg, "event");
        if (event) {
                json_t *data = json_get_object(msg, "data");
                _cleanup_json_ json_t *empty = data ? NULL : json_object();
                bool deliver;
                pthread_mutex_lock(&q->lock);
                deliver = !q->closed && q->state != QMP_STATE_DISCONNECTED;
                pthread_mutex_unlock(&q->lock);
                if (deliver && q->on_event && (data || empty))
                        q->on_event(q, event, data ? data : empty, q->userdata);
                return 0;
        }
        /* Something QMP may add later (or a second greeting): not ours to understand. */
        log_debug("QMP message of unknown kind ignored");
        return 0;
}

static int handle_line(qmp_client_t *q, const char *line, size_t len) {
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
                len--;
        size_t start = 0;
        while (start < len && (line[start] == ' ' || line[start] == '\t' || line[start] == '\r'))
                start++;
        if (start == len)
                return 0;
        json_error_t jerr;
        _cleanup_json_ json_t *msg = json_loadb(line + start, len - start, 0, &jerr);
        if (!msg) {
                log_debug("QMP sent something that is not JSON: %s", jerr.text);
                return -EPROTO;
        }
        return handle_message(q, msg);
}

/* Consumes whole lines from the buffer; keeps a partial last line for the next read. */
static int process_buffer(qmp_client_t *q) {
        size_t off = 0;
        while (off < q->len) {
                char *nl = memchr(q->buf + off, '\n', q->len - off);
                if (!nl)
                        break;
                size_t line_len = (size_t) (nl - (q->buf + off));
                int r = handle_line(q, q->buf + off, line_len);
                off += line_len + 1;
                if (r < 0)
                        return r;
                if (qmp_client_get_state(q) == QMP_STATE_DISCONNECTED) {
                        q->len = 0;
                        return 0;
                }
        }
        memmove(q->buf, q->buf + off, q->len - off);
        q->len -= off;
        if (q->len > QMP_MESSAGE_MAX)
                return -EPROTO;
        return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        _cleanup_(qmp_client_unrefp) qmp_client_t *q = qmp_client_ref(userdata);
        pthread_mutex_lock(&q->lock);
        if (!q->loop_thread_known) {
                q->loop_thread = pthread_self();
                q->loop_thread_known = true;
        }
        pthread_mutex_unlock(&q->lock);

        /* Bounded so that one chatty monitor cannot starve the loop's other sockets. */
        for (int rounds = 0; rounds < 16; rounds++) {
                if (qmp_client_get_state(q) == QMP_STATE_DISCONNECTED)
                        return;
                if (q->cap - q->len < QMP_READ_CHUNK) {
                        size_t cap = q->len + QMP_READ_CHUNK;
                        char *b = realloc(q->buf, cap);
                        if (!b) {
                                disconnect(q, -ENOMEM, true);
                                return;
                        }
                        q->buf = b;
                        q->cap = cap;
                }
                ssize_t n = recv(fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        disconnect(q, n == 0 ? -ECONNRESET : -errno, true);
                        return;
                }
                q->len += (size_t) n;
                int r = process_buffer(q);
                if (r < 0) {
                        disconnect(q, r, true);
                        return;
                }
        }
}

int qmp_client_new(struct event_base *loop, int fd, qmp_event_cb on_event, void *userdata, qmp_client_t **ret) {
        _cleanup_close_ int owned_fd = fd;
        if (!loop || fd < 0 || !ret)
                return -EINVAL;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        qmp_client_t *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->n_ref = 1;
        q->fd = -1;
        pthread_mutex_init(&q->lock, NULL);
        pthread_mutex_init(&q->write_lock, NULL);
        int r = cond_init_monotonic(&q->state_changed);
        if (r < 0) {
                pthread_mutex_destroy(&q->write_lock);
                pthread_mutex_destroy(&q->lock);
                free(q);
                return r;
        }
        q->loop = loop;
        q->fd = TAKE_FD(owned_fd);
        q->state = QMP_STATE_GREETING;
        q->on_event = on_event;
        q->userdata = userdata;
        q->read_event = event_new(loop, q->fd, EV_READ | EV_PERSIST, on_readable, q);
        if (!q->read_event || event_add(q->read_event, NULL) < 0) {
                qmp_client_unref(q);
                return -ENOMEM;
        }
        *ret = q;
        return 0;
}

/* Connects to a Unix socket whose path may be longer than sun_path, through /proc/self/fd. */
static int connect_unix(const char *path, int *ret_fd) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int dir_fd = -1;
        if (strlen(path) < sizeof sa.sun_path) {
                memcpy(sa.sun_path, path, strlen(path) + 1);
        } else {
                const char *slash = strrchr(path, '/');
                if (!slash || slash == path)
                        return -ENAMETOOLONG;
                _cleanup_free_ char *dir = strndup(path, (size_t) (slash - path));
                if (!dir)
                        return -ENOMEM;
                dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (dir_fd < 0)
                        return -errno;
                int n = snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dir_fd, slash + 1);
                if (n < 0 || (size_t) n >= sizeof sa.sun_path)
                        return -ENAMETOOLONG;
        }
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return errno == EAGAIN ? -EBUSY : -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int qmp_client_connect(struct event_base *loop, const char *socket_path, int timeout_ms, qmp_event_cb on_event,
                       void *userdata, qmp_client_t **ret) {
        int fd = -1;
        int r = connect_unix(socket_path, &fd);
        if (r < 0)
                return r;
        qmp_client_t *q;
        r = qmp_client_new(loop, fd, on_event, userdata, &q);
        if (r < 0)
                return r;
        r = qmp_client_wait_ready(q, timeout_ms);
        if (r < 0) {
                qmp_client_close(q);
                return r;
        }
        *ret = q;
        return 0;
}

int qmp_client_wait_ready(qmp_client_t *q, int timeout_ms) {
        struct timespec deadline;
        deadline_after(timeout_ms, &deadline);
        int r = 0;
        pthread_mutex_lock(&q->lock);
        while (q->state != QMP_STATE_READY && q->state != QMP_STATE_DISCONNECTED) {
                int k = pthread_cond_timedwait(&q->state_changed, &q->lock, &deadline);
                if (k == ETIMEDOUT) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (q->state == QMP_STATE_READY)
                r = 0;
        else if (q->state == QMP_STATE_DISCONNECTED)
                r = q->disconnect_error < 0 ? q->disconnect_error : -ENOTCONN;
        pthread_mutex_unlock(&q->lock);
        return r;
}

qmp_state_t qmp_client_get_state(qmp_client_t *q) {
        pthread_mutex_lock(&q->lock);
        qmp_state_t s = q->state;
        pthread_mutex_unlock(&q->lock);
        return s;
}

unsigned qmp_client_get_version(qmp_client_t *q) {
        pthread_mutex_lock(&q->lock);
        unsigned v = q->version;
        pthread_mutex_unlock(&q->lock);
        return v;
}

typedef struct sync_waiter {
        pthread_mutex_t lock;
        pthread_cond_t done_cond;
        bool done;
        int r;
        json_t *result;
        qmp_error_t error;
} sync_waiter_t;

static void on_sync_reply(qmp_client_t *q, int r, json_t *result, const qmp_error_t *error, void *userdata) {
        sync_waiter_t *w = userdata;
        pthread_mutex_lock(&w->lock);
        /* A copy, so that no jansson object is shared with the loop thread. */
        w->result = result ? json_deep_copy(result) : NULL;
        w->r = result && !w->result ? -ENOMEM : r;
        if (error)
                w->error = *error;
        w->done = true;
        pthread_cond_signal(&w->done_cond);
        pthread_mutex_unlock(&w->lock);
}

/* Forgets the command of waiter w if it is still pending; false when its callback has run or runs. */
static bool pending_forget(qmp_client_t *q, sync_waiter_t *w) {
        bool found = false;
        pthread_mutex_lock(&q->lock);
        for (qmp_pending_t **p = &q->pending; *p; p = &(*p)->next)
                if ((*p)->userdata == w && (*p)->cb == on_sync_reply) {
                        qmp_pending_t *gone = *p;
                        *p = gone->next;
                        pending_free(gone);
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&q->lock);
        return found;
}

int qmp_call_full(qmp_client_t *q, const char *command, json_t *args, int timeout_ms, json_t **ret_result,
                  qmp_error_t *ret_error) {
        if (!q) {
                json_decref(args);
                return -EINVAL;
        }
        pthread_mutex_lock(&q->lock);
        bool on_loop = q->loop_thread_known && pthread_equal(q->loop_thread, pthread_self());
        pthread_mutex_unlock(&q->lock);
        if (on_loop) {
                json_decref(args);
                return -EDEADLK;
        }

        sync_waiter_t w = {.r = 0};
        pthread_mutex_init(&w.lock, NULL);
        int r = cond_init_monotonic(&w.done_cond);
        if (r < 0) {
                pthread_mutex_destroy(&w.lock);
                json_decref(args);
                return r;
        }
        struct timespec deadline;
        deadline_after(timeout_ms, &deadline);
        r = qmp_call_async(q, command, args, on_sync_reply, &w);
        if (r >= 0) {
                pthread_mutex_lock(&w.lock);
                while (!w.done) {
                        if (pthread_cond_timedwait(&w.done_cond, &w.lock, &deadline) != ETIMEDOUT)
                                continue;
                        pthread_mutex_unlock(&w.lock);
                        bool forgotten = pending_forget(q, &w);
                        pthread_mutex_lock(&w.lock);
                        if (forgotten) {
                                w.r = -ETIMEDOUT;
                                break;
                        }
                        /* The reply is being delivered right now: wait for it without a deadline. */
                        while (!w.done)
                                pthread_cond_wait(&w.done_cond, &w.lock);
                }
                pthread_mutex_unlock(&w.lock);
                r = w.r;
        }
        pthread_cond_destroy(&w.done_cond);
        pthread_mutex_destroy(&w.lock);
        if (r == -EREMOTEIO) {
                log_debug("QMP %s failed: %s: %s", command, w.error.class_name, w.error.desc);
                if (ret_error)
                        *ret_error = w.error;
        }
        if (r >= 0 && ret_result)
                *ret_result = TAKE_PTR(w.result);
        json_decref(w.result);
        return r;
}

int qmp_call(qmp_client_t *q, const char *command, json_t *args, json_t **ret_result, int timeout_ms) {
        return qmp_call_full(q, command, args, timeout_ms, ret_result, NULL);
}

void qmp_client_close(qmp_client_t *q) {
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        pthread_mutex_unlock(&q->lock);
        /* From another thread this waits for a running callback of this client to return. */
        if (q->read_event)
                event_del(q->read_event);
        disconnect(q, -ECANCELED, false);
        qmp_client_unref(q);
}
