/* The host end of the agent wire protocol: a connection to one guest agent with its I/O thread,
 * and the agent_t handles that share it (see client.h and docs/agent-protocol.md).
 *
 * One mutex per connection guards everything in it; callbacks run on the I/O thread with the
 * mutex dropped, and a handle that is inside one is marked `dispatching` so that closing it waits
 * for the callback (or, from the callback itself, leaves the free to the I/O thread). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/protocol.h"
#include "json-util.h"
#include "log.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define HELLO_INTERVAL_MS 200
#define CONNECT_RETRY_MS 50
#define READ_CHUNK 65536
/* Streams the agent sent CREDIT or EOF for that nobody opened (yet): kept for a later
 * agent_stream_open, the oldest dropped beyond this. */
#define MAX_UNOPENED_STREAMS 256
/* The agent's HELLO is small; a bound makes a stray match in garbage unlikely. */
#define HELLO_MAX_PAYLOAD 4096
#define NSEC_PER_MSEC INT64_C(1000000)

typedef struct out_frame {
        struct out_frame *next;
        uint8_t *data;
        size_t size, sent;
        uint32_t request_id; /* a REQUEST's id, so a cancelled call can withdraw it while unsent */
} out_frame_t;

typedef struct client_handle client_handle_t;

typedef struct pending_call {
        struct pending_call *next;
        uint32_t id;
        bool done;
        int error;
        json_t *result;
        char *message;
} pending_call_t;

typedef struct stream {
        struct stream *next;
        uint32_t id;
        client_handle_t *owner; /* NULL: known only from the agent's CREDIT or EOF so far */
        agent_stream_cb on_data;
        void *userdata;
        uint64_t send_credit; /* DATA bytes the agent lets us send */
        uint64_t recv_credit; /* DATA bytes we let the agent send that have not arrived */
        bool eof_received, eof_sent;
        bool ended;        /* the end was delivered to on_data */
        bool end_deferred; /* an EOF that came before the open waits for the I/O thread */
} stream_t;

struct client_handle {
        agent_t base;
        client_handle_t *next;
        agent_conn_t *conn;
        unsigned busy; /* threads inside call or agent_stream_write on this handle */
        bool cancelled, closed;
        bool dispatching;         /* the I/O thread is inside one of its callbacks */
        bool free_after_dispatch; /* closed from that callback */
};

struct agent_conn {
        pthread_mutex_t lock;
        pthread_cond_t changed; /* any state change: a response, credit, cancel, death, a callback done */
        unsigned refs;          /* the creator's plus one per open handle */
        int fd, wake_fd;
        pthread_t thread;
        bool thread_started, stopping, free_on_exit;
        bool dead;
        int error;
        agent_conn_disconnect_cb on_disconnect;
        void *disconnect_userdata;
        bool disconnect_running;
        client_handle_t *handles;
        pending_call_t *pending;
        uint32_t next_id;
        stream_t *streams;
        unsigned n_unopened;
        out_frame_t *out, **out_tail;
        agent_frame_reader_t reader; /* the handshake's, then only the I/O thread's */
};

static const agent_ops_t client_ops;

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static struct timespec timespec_from_ns(int64_t ns) {
        return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

static int64_t deadline_after(int timeout_ms) {
        return now_monotonic_ns() + (int64_t) (timeout_ms > 0 ? timeout_ms : 0) * NSEC_PER_MSEC;
}

static bool on_io_thread(agent_conn_t *c) {
        return c->thread_started && pthread_equal(pthread_self(), c->thread);
}

static void conn_wake(agent_conn_t *c) {
        uint64_t one = 1;
        if (write(c->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                log_debug_errno(errno, "Failed to wake the agent connection thread: %m");
}

/* ---- the outgoing queue ---- */

static void out_free_all(agent_conn_t *c) {
        while (c->out) {
                out_frame_t *f = c->out;
                c->out = f->next;
                free(f->data);
                free(f);
        }
        c->out_tail = &c->out;
}

static int out_append(agent_conn_t *c, agent_frame_type_t type, uint32_t stream, uint32_t id, const void *payload,
                      size_t len) {
        out_frame_t *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->data = agent_frame_build(type, stream, id, payload, len, &f->size);
        if (!f->data) {
                free(f);
                return len > AGENT_FRAME_MAX_PAYLOAD ? -EMSGSIZE : -ENOMEM;
        }
        f->request_id = type == AGENT_FRAME_REQUEST ? id : 0;
        *c->out_tail = f;
        c->out_tail = &f->next;
        return 0;
}

/* Withdraws a cancelled call's REQUEST unless it started to go out (a partial frame must finish). */
static void out_withdraw_request(agent_conn_t *c, uint32_t id) {
        for (out_frame_t **pp = &c->out; *pp; pp = &(*pp)->next) {
                out_frame_t *f = *pp;
                if (f->request_id != id || f->sent > 0)
                        continue;
                *pp = f->next;
                if (!*pp)
                        c->out_tail = pp;
                free(f->data);
                free(f);
                return;
        }
}

/* Sends queued frames as far as the socket takes them without blocking. */
static int out_flush(agent_conn_t *c) {
        while (c->out) {
                out_frame_t *f = c->out;
                ssize_t n = send(c->fd, f->data + f->sent, f->size - f->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                f->sent += (size_t) n;
                if (f->sent < f->size)
                        continue;
                c->out = f->next;
                if (!c->out)
                        c->out_tail = &c->out;
                free(f->data);
                free(f);
        }
        return 0;
}

/* Marks the connection dead and wakes everyone; the I/O thread then notifies and exits. */
static void conn_kill_locked(agent_conn_t *c, int error) {
        if (c->dead)
                return;
        c->dead = true;
        c->error = error;
        if (error == -ECONNRESET)
                log_info("The agent connection was closed");
        else
                log_warning_errno(error, "Dropping the agent connection: %m");
        out_free_all(c);
        (void) shutdown(c->fd, SHUT_RDWR);
        conn_wake(c);
        pthread_cond_broadcast(&c->changed);
}

/* Queues one frame and pushes it out as far as possible; a write error kills the connection. */
static int queue_frame_locked(agent_conn_t *c, agent_frame_type_t type, uint32_t stream, uint32_t id,
                              const void *payload, size_t len) {
        if (c->dead)
                return -ECONNRESET;
        int r = out_append(c, type, stream, id, payload, len);
        if (r < 0)
                return r;
        r = out_flush(c);
        if (r < 0) {
                conn_kill_locked(c, r);
                return -ECONNRESET;
        }
        if (c->out)
                conn_wake(c); /* the I/O thread finishes when the socket takes more */
        return 0;
}

/* ---- pending calls and streams ---- */

static pending_call_t *pending_find(agent_conn_t *c, uint32_t id) {
        for (pending_call_t *p = c->pending; p; p = p->next)
                if (p->id == id)
                        return p;
        return NULL;
}

static void pending_unlink(agent_conn_t *c, pending_call_t *p) {
        for (pending_call_t **pp = &c->pending; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        return;
                }
}

/* Request ids wrap around, skipping 0 and the ids of calls still waiting. */
static uint32_t request_id_new(agent_conn_t *c) {
        for (;;) {
                uint32_t id = c->next_id++;
                if (id != 0 && !pending_find(c, id))
                        return id;
        }
}

static stream_t *stream_find(agent_conn_t *c, uint32_t id) {
        for (stream_t *s = c->streams; s; s = s->next)
                if (s->id == id)
                        return s;
        return NULL;
}

static stream_t *stream_find_owned(agent_conn_t *c, client_handle_t *h, uint32_t id) {
        stream_t *s = stream_find(c, id);
        return s && s->owner == h ? s : NULL;
}

static void stream_unlink_free(agent_conn_t *c, stream_t *s) {
        for (stream_t **pp = &c->streams; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        if (!s->owner)
                c->n_unopened--;
        free(s);
}

/* Remembers a stream the agent mentioned before anyone opened it; NULL on allocation failure. */
static stream_t *stream_unopened_new(agent_conn_t *c, uint32_t id) {
        if (c->n_unopened >= MAX_UNOPENED_STREAMS) {
                stream_t *oldest = NULL;
                for (stream_t *s = c->streams; s; s = s->next)
                        if (!s->owner)
                                oldest = s; /* new streams go to the front */
                if (oldest) {
                        log_debug("Forgetting unopened agent stream %" PRIu32, oldest->id);
                        stream_unlink_free(c, oldest);
                }
        }
        stream_t *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->id = id;
        s->next = c->streams;
        c->streams = s;
        c->n_unopened++;
        return s;
}

/* ---- teardown ---- */

static void conn_free(agent_conn_t *c) {
        assert(!c->handles && !c->pending);
        if (c->fd >= 0)
                close(c->fd);
        if (c->wake_fd >= 0)
                close(c->wake_fd);
        out_free_all(c);
        while (c->streams) {
                stream_t *s = c->streams;
                c->streams = s->next;
                free(s);
        }
        agent_frame_reader_free(&c->reader);
        pthread_cond_destroy(&c->changed);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* Drops one reference; true when the caller must call conn_finish after unlocking. The I/O thread
 * cannot join itself: there it detaches and frees the connection when its loop ends. */
static bool conn_drop_ref_locked(agent_conn_t *c) {
        assert(c->refs > 0);
        if (--c->refs > 0)
                return false;
        c->stopping = true;
        if (on_io_thread(c)) {
                c->free_on_exit = true;
                pthread_detach(c->thread);
                return false;
        }
        if (c->thread_started)
                conn_wake(c);
        return true;
}

static void conn_finish(agent_conn_t *c) {
        if (c->thread_started)
                pthread_join(c->thread, NULL);
        conn_free(c);
}

/* Unlinks and frees a closed handle that nobody uses any more; true as conn_drop_ref_locked. */
static bool handle_free_locked(agent_conn_t *c, client_handle_t *h) {
        for (client_handle_t **pp = &c->handles; *pp; pp = &(*pp)->next)
                if (*pp == h) {
                        *pp = h->next;
                        break;
                }
        free(h);
        return conn_drop_ref_locked(c);
}

/* ---- delivery on the I/O thread (called and returning with the lock held) ---- */

static void dispatch_begin(client_handle_t *h) {
        h->dispatching = true;
}

static void dispatch_end(agent_conn_t *c, client_handle_t *h) {
        h->dispatching = false;
        pthread_cond_broadcast(&c->changed);
        if (h->free_after_dispatch) {
                /* Closed from its own callback: its calls are cancelled and leave without us. */
                while (h->busy > 0)
                        pthread_cond_wait(&c->changed, &c->lock);
                bool last = handle_free_locked(c, h);
                assert(!last); /* we are the I/O thread */
                (void) last;
        }
}

static void deliver_event_locked(agent_conn_t *c, json_t *event) {
        client_handle_t *next;
        for (client_handle_t *h = c->handles; h; h = next) {
                agent_event_cb cb = h->base.on_event;
                void *userdata = h->base.userdata;
                if (h->closed || !cb) {
                        next = h->next;
                        continue;
                }
                dispatch_begin(h);
                pthread_mutex_unlock(&c->lock);
                cb(&h->base, event, userdata);
                pthread_mutex_lock(&c->lock);
                next = h->next; /* h stays linked while dispatching */
                dispatch_end(c, h);
        }
}

/* Delivers to the stream's consumer; s must not be used afterwards (it may be gone). */
static void deliver_stream_locked(agent_conn_t *c, stream_t *s, const void *data, size_t len, int error) {
        client_handle_t *h = s->owner;
        if (!h || h->closed || !s->on_data)
                return;
        agent_stream_cb cb = s->on_data;
        void *userdata = s->userdata;
        uint32_t id = s->id;
        dispatch_begin(h);
        pthread_mutex_unlock(&c->lock);
        cb(&h->base, id, data, len, error, userdata);
        pthread_mutex_lock(&c->lock);
        dispatch_end(c, h);
}

static void deliver_deferred_locked(agent_conn_t *c) {
        for (;;) {
                stream_t *s = c->streams;
                while (s && !s->end_deferred)
                        s = s->next;
                if (!s)
                        return;
                s->end_deferred = false;
                if (s->owner && !s->ended) {
                        s->ended = true;
                        deliver_stream_locked(c, s, NULL, 0, 0);
                }
        }
}

static void notify_death_locked(agent_conn_t *c) {
        for (;;) {
                stream_t *s = c->streams;
                while (s && (!s->owner || s->ended))
                        s = s->next;
                if (!s)
                        break;
                s->ended = true;
                deliver_stream_locked(c, s, NULL, 0, -ECONNRESET);
        }
        if (c->on_disconnect) {
                agent_conn_disconnect_cb cb = c->on_disconnect;
                void *userdata = c->disconnect_userdata;
                c->disconnect_running = true;
                pthread_mutex_unlock(&c->lock);
                cb(c, c->error, userdata);
                pthread_mutex_lock(&c->lock);
                c->disconnect_running = false;
                pthread_cond_broadcast(&c->changed);
        }
}

/* ---- incoming frames ---- */

static int parse_response(const uint8_t *payload, size_t len, json_t **ret_result, int *ret_error, char **ret_message) {
        _cleanup_json_ json_t *root = json_loadb((const char *) payload, len, 0, NULL);
        if (!json_is_object(root))
                return -EPROTO;
        json_t *result = json_object_get(root, "Result"), *error = json_object_get(root, "Error");
        if (!result == !error)
                return -EPROTO;
        if (result) {
                if (!json_is_object(result))
                        return -EPROTO;
                *ret_result = json_incref(result);
                *ret_error = 0;
                *ret_message = NULL;
                return 0;
        }
        json_t *number = json_object_get(error, "Errno"), *message = json_object_get(error, "Message");
        if (!json_is_object(error) || !json_is_integer(number))
                return -EPROTO;
        json_int_t e = json_integer_value(number);
        if (e <= 0 || e >= 4096)
                return -EPROTO;
        if (message && !json_is_string(message) && !json_is_null(message))
                return -EPROTO;
        char *m = NULL;
        if (json_is_string(message) && !(m = strdup(json_string_value(message))))
                return -ENOMEM;
        *ret_result = NULL;
        *ret_error = (int) -e;
        *ret_message = m;
        return 0;
}

static int on_response(agent_conn_t *c, uint32_t id, const uint8_t *payload, size_t len) {
        json_t *result;
        char *message;
        int error;
        int r = parse_response(payload, len, &result, &error, &message);
        if (r < 0)
                return log_warning_errno(r == -ENOMEM ? r : -EPROTO, "Invalid response %" PRIu32 " from the agent", id);
        pthread_mutex_lock(&c->lock);
        pending_call_t *p = pending_find(c, id);
        if (p) {
                p->done = true;
                p->error = error;
                p->result = result;
                p->message = message;
                pending_unlink(c, p);
                pthread_cond_broadcast(&c->changed);
        }
        pthread_mutex_unlock(&c->lock);
        if (!p) {
                /* The caller gave up (cancel) before the answer came. */
                log_debug("Ignoring the agent's response to request %" PRIu32 " nobody waits for", id);
                json_decref(result);
                free(message);
        }
        return 0;
}

static int on_event(agent_conn_t *c, const uint8_t *payload, size_t len) {
        _cleanup_json_ json_t *event = json_loadb((const char *) payload, len, 0, NULL);
        if (!json_is_object(event))
                return log_warning_errno(-EPROTO, "Invalid event from the agent");
        pthread_mutex_lock(&c->lock);
        deliver_event_locked(c, event);
        pthread_mutex_unlock(&c->lock);
        return 0;
}

static int on_data_locked(agent_conn_t *c, uint32_t id, const uint8_t *payload, size_t len) {
        stream_t *s = stream_find(c, id);
        if (!s || !s->owner || s->eof_received) {
                /* Sent within the credit of a stream we closed since; nobody wants it. */
                log_debug("Dropping %zu bytes of agent stream %" PRIu32 " nobody has open", len, id);
                return 0;
        }
        if (len > s->recv_credit)
                return log_warning_errno(-EPROTO,
                                         "The agent sent %zu bytes on stream %" PRIu32 " with %" PRIu64 " of credit",
                                         len, id, s->recv_credit);
        s->recv_credit -= len;
        if (len > 0)
                deliver_stream_locked(c, s, payload, len, 0);
        return 0;
}

static int on_eof_locked(agent_conn_t *c, uint32_t id) {
        stream_t *s = stream_find(c, id);
        if (!s && !(s = stream_unopened_new(c, id)))
                return -ENOMEM;
        if (s->eof_received)
                return 0;
        s->eof_received = true;
        if (s->owner && !s->ended) {
                s->ended = true;
                deliver_stream_locked(c, s, NULL, 0, 0);
        }
        return 0;
}

static int on_credit_locked(agent_conn_t *c, uint32_t id, uint32_t bytes) {
        stream_t *s = stream_find(c, id);
        if (!s && !(s = stream_unopened_new(c, id)))
                return -ENOMEM;
        s->send_credit = min_u64(s->send_credit + bytes, UINT32_MAX);
        pthread_cond_broadcast(&c->changed);
        return 0;
}

static int on_frame(agent_conn_t *c, const agent_frame_header_t *h, const uint8_t *payload) {
        int r = 0;
        switch (h->type) {
        case AGENT_FRAME_HELLO:
                /* The answers to the HELLOs repeated while the guest was booting. */
                log_debug("Ignoring a repeated HELLO from the agent");
                return 0;
        case AGENT_FRAME_REQUEST:
                return log_warning_errno(-EPROTO, "The agent sent a request");
        case AGENT_FRAME_RESPONSE:
                return on_response(c, h->id, payload, h->length);
        case AGENT_FRAME_EVENT:
                return on_event(c, payload, h->length);
        case AGENT_FRAME_DATA:
                pthread_mutex_lock(&c->lock);
                r = on_data_locked(c, h->stream, payload, h->length);
                pthread_mutex_unlock(&c->lock);
                return r;
        case AGENT_FRAME_EOF:
                pthread_mutex_lock(&c->lock);
                r = on_eof_locked(c, h->stream);
                pthread_mutex_unlock(&c->lock);
                return r;
        case AGENT_FRAME_CREDIT:
                pthread_mutex_lock(&c->lock);
                r = on_credit_locked(c, h->stream, get_be32(payload));
                pthread_mutex_unlock(&c->lock);
                return r;
        default:
                return -EPROTO; /* agent_frame_header_decode rejects other types */
        }
}

/* Reads what the socket has into the frame reader: 1 when bytes came, 0 when none, -ECONNRESET at
 * EOF, or another negative errno. */
static int conn_receive(agent_conn_t *c, uint8_t *buf) {
        ssize_t n = recv(c->fd, buf, READ_CHUNK, MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        int r = agent_frame_reader_feed(&c->reader, buf, (size_t) n);
        return r < 0 ? r : 1;
}

static bool conn_is_dead(agent_conn_t *c) {
        pthread_mutex_lock(&c->lock);
        bool dead = c->dead;
        pthread_mutex_unlock(&c->lock);
        return dead;
}

/* Handles every complete frame in the reader. */
static int conn_process(agent_conn_t *c) {
        for (;;) {
                agent_frame_header_t h;
                const uint8_t *payload;
                int r = agent_frame_reader_next(&c->reader, &h, &payload);
                if (r < 0)
                        return log_warning_errno(-EPROTO, "Invalid frame header from the agent: %s", strerror(-r));
                if (r == 0 || conn_is_dead(c))
                        return 0;
                r = on_frame(c, &h, payload);
                if (r < 0)
                        return r;
        }
}

static void *conn_thread(void *userdata) {
        agent_conn_t *c = userdata;
        _cleanup_free_ uint8_t *buf = malloc(READ_CHUNK);
        int r = buf ? conn_process(c) : -ENOMEM; /* what came with the agent's HELLO */

        pthread_mutex_lock(&c->lock);
        if (r < 0)
                conn_kill_locked(c, r);
        while (!c->stopping && !c->dead) {
                struct pollfd p[2] = {
                        { .fd = c->fd, .events = POLLIN | (c->out ? POLLOUT : 0) },
                        { .fd = c->wake_fd, .events = POLLIN },
                };
                pthread_mutex_unlock(&c->lock);
                r = 0;
                if (poll(p, ELEMENTSOF(p), -1) < 0) {
                        r = errno == EINTR ? 0 : -errno;
                        p[0].revents = p[1].revents = 0;
                }
                if (p[1].revents & POLLIN) {
                        uint64_t v;
                        (void) !read(c->wake_fd, &v, sizeof v);
                }
                if (p[0].revents & POLLNVAL)
                        r = -EBADF;
                else if (r == 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                        r = conn_receive(c, buf);
                        if (r > 0)
                                r = conn_process(c);
                }
                pthread_mutex_lock(&c->lock);
                if (r < 0)
                        conn_kill_locked(c, r);
                else if (p[0].revents & POLLOUT) {
                        r = out_flush(c);
                        if (r < 0)
                                conn_kill_locked(c, r);
                }
                if (!c->dead)
                        deliver_deferred_locked(c);
        }
        if (c->dead)
                notify_death_locked(c);
        bool free_self = c->free_on_exit;
        pthread_mutex_unlock(&c->lock);
        if (free_self)
                conn_free(c);
        return NULL;
}

/* ---- connecting ---- */

/* 0 for a HELLO of our version, -EPROTO for another version, -EBADMSG for something else. */
static int parse_hello(const uint8_t *payload, size_t len) {
        _cleanup_json_ json_t *hello = json_loadb((const char *) payload, len, 0, NULL);
        json_t *version = json_object_get(hello, "Version");
        if (!json_is_object(hello) || !json_is_integer(version))
                return log_debug_errno(-EBADMSG, "Skipping a HELLO that is not {\"Version\":N,...}");
        if (json_integer_value(version) != AGENT_PROTOCOL_VERSION)
                return log_error_errno(-EPROTO, "The agent speaks protocol version %" JSON_INTEGER_FORMAT ", not %d",
                                       json_integer_value(version), AGENT_PROTOCOL_VERSION);
        const char *name = json_get_string(hello, "Agent");
        log_debug("Connected to agent %s", name ? name : "(unnamed)");
        return 0;
}

/* Skips what comes before the first plausible HELLO header: whole frames the agent sent to an
 * earlier connection, or the tail of one whose head went to it (on a virtio-serial port the agent
 * drops its half-written output only when our HELLO arrives). True when the reader starts with a
 * HELLO header. */
static bool reader_skip_to_hello(agent_frame_reader_t *r) {
        static const uint8_t rest[AGENT_FRAME_HEADER_SIZE - 4] = { 0, 0, 0, 0, AGENT_FRAME_HELLO, 0, 0, 0, 0, 0, 0, 0 };
        for (; r->len - r->consumed >= AGENT_FRAME_HEADER_SIZE; r->consumed++) {
                const uint8_t *p = r->buf + r->consumed;
                uint32_t length = get_be32(p);
                if (length > 0 && length <= HELLO_MAX_PAYLOAD && memcmp(p + 4, rest, sizeof rest) == 0)
                        return true;
        }
        return false;
}

/* Repeats our HELLO until the agent's arrives; runs before the I/O thread exists. */
static int conn_handshake(agent_conn_t *c, int64_t deadline) {
        _cleanup_free_ uint8_t *buf = malloc(READ_CHUNK);
        _cleanup_json_ json_t *hello =
                json_pack("{s:i, s:s}", "Version", AGENT_PROTOCOL_VERSION, "Agent", "katad " PACKAGE_VERSION);
        _cleanup_free_ char *text = hello ? json_dumps(hello, JSON_COMPACT) : NULL;
        if (!buf || !text)
                return -ENOMEM;
        int64_t next_hello = 0;
        for (;;) {
                int64_t now = now_monotonic_ns();
                int r;
                if (now >= next_hello) {
                        /* A HELLO still (partly) queued behind a full socket is as good as a new one. */
                        if (!c->out && (r = out_append(c, AGENT_FRAME_HELLO, 0, 0, text, strlen(text))) < 0)
                                return r;
                        if ((r = out_flush(c)) < 0)
                                return r == -EPIPE ? -ECONNRESET : r;
                        next_hello = now + HELLO_INTERVAL_MS * NSEC_PER_MSEC;
                }
                if (now >= deadline)
                        return log_debug_errno(-ETIMEDOUT, "The agent did not answer HELLO in time");
                int64_t until = next_hello < deadline ? next_hello : deadline;
                struct pollfd p = { .fd = c->fd, .events = POLLIN | (c->out ? POLLOUT : 0) };
                if (poll(&p, 1, (int) ((until - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC)) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if ((p.revents & POLLOUT) && (r = out_flush(c)) < 0)
                        return r == -EPIPE ? -ECONNRESET : r;
                if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                r = conn_receive(c, buf);
                if (r < 0)
                        return r;
                while (reader_skip_to_hello(&c->reader)) {
                        agent_frame_header_t h;
                        const uint8_t *payload;
                        if (agent_frame_reader_next(&c->reader, &h, &payload) <= 0)
                                break; /* the rest of the HELLO is still to come */
                        r = parse_hello(payload, h.length);
                        if (r != -EBADMSG)
                                return r;
                }
        }
}

static int conn_new(int fd, int64_t deadline, agent_conn_t **ret) {
        _cleanup_close_ int owned_fd = fd;
        if (fd < 0)
                return -EBADF;
        agent_conn_t *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->changed, &attr);
        pthread_condattr_destroy(&attr);
        pthread_mutex_init(&c->lock, NULL);
        c->fd = TAKE_FD(owned_fd);
        c->refs = 1;
        c->next_id = 1;
        c->out_tail = &c->out;
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r = c->wake_fd < 0 ? -errno : conn_handshake(c, deadline);
        if (r >= 0) {
                pthread_mutex_lock(&c->lock); /* the thread's first act is to take it: c->thread is set by then */
                r = -pthread_create(&c->thread, NULL, conn_thread, c);
                c->thread_started = r == 0;
                if (c->thread_started)
                        (void) pthread_setname_np(c->thread, "agent-io");
                pthread_mutex_unlock(&c->lock);
        }
        if (r < 0) {
                conn_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int agent_conn_new(int fd, int timeout_ms, agent_conn_t **ret) {
        return conn_new(fd, deadline_after(timeout_ms), ret);
}

int agent_conn_connect(const char *socket_path, int timeout_ms, agent_conn_t **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strempty(socket_path))
                return -EINVAL;
        size_t len = strlen(socket_path);
        if (len >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, socket_path, len + 1);

        int64_t deadline = deadline_after(timeout_ms);
        for (;;) {
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0)
                        return conn_new(TAKE_FD(fd), deadline, ret);
                int r = -errno;
                if (r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN && r != -EINTR)
                        return log_debug_errno(r, "Failed to connect to %s: %m", socket_path);
                int64_t left = deadline - now_monotonic_ns();
                if (left <= 0)
                        return log_debug_errno(r == -ECONNREFUSED ? r : -ETIMEDOUT, "Failed to connect to %s: %m",
                                               socket_path);
                struct timespec pause = timespec_from_ns(
                        left < CONNECT_RETRY_MS * NSEC_PER_MSEC ? left : CONNECT_RETRY_MS * NSEC_PER_MSEC);
                nanosleep(&pause, NULL);
        }
}

void agent_conn_unref(agent_conn_t *c) {
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->on_disconnect = NULL;
        c->disconnect_userdata = NULL;
        while (c->disconnect_running && !on_io_thread(c))
                pthread_cond_wait(&c->changed, &c->lock);
        bool last = conn_drop_ref_locked(c);
        pthread_mutex_unlock(&c->lock);
        if (last)
                conn_finish(c);
}

bool agent_conn_is_alive(agent_conn_t *c) {
        return !conn_is_dead(c);
}

void agent_conn_set_disconnect_handler(agent_conn_t *c, agent_conn_disconnect_cb cb, void *userdata) {
        pthread_mutex_lock(&c->lock);
        c->on_disconnect = cb;
        c->disconnect_userdata = userdata;
        pthread_mutex_unlock(&c->lock);
}

int agent_conn_open(agent_conn_t *c, agent_t **ret) {
        client_handle_t *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->base.ops = &client_ops;
        h->conn = c;
        pthread_mutex_lock(&c->lock);
        if (c->dead) {
                pthread_mutex_unlock(&c->lock);
                free(h);
                return -ECONNRESET;
        }
        h->next = c->handles;
        c->handles = h;
        c->refs++;
        pthread_mutex_unlock(&c->lock);
        *ret = &h->base;
        return 0;
}

/* ---- agent_ops ---- */

static int call_locked(agent_conn_t *c, client_handle_t *h, const char *text, size_t len, pending_call_t *p) {
        if (h->cancelled)
                return -ESHUTDOWN;
        if (c->dead)
                return -ECONNRESET;
        if (on_io_thread(c))
                return log_error_errno(-EDEADLK, "Agent call from an agent callback: its answer could never arrive");
        p->id = request_id_new(c);
        int r = queue_frame_locked(c, AGENT_FRAME_REQUEST, 0, p->id, text, len);
        if (r < 0)
                return r;
        p->next = c->pending;
        c->pending = p;
        while (!p->done && !h->cancelled && !c->dead)
                pthread_cond_wait(&c->changed, &c->lock);
        if (p->done)
                return p->error;
        pending_unlink(c, p);
        out_withdraw_request(c, p->id);
        return h->cancelled ? -ESHUTDOWN : -ECONNRESET;
}

/* Hands a failed call's message (the guest's, else one saying what happened) to the caller. */
static int call_failed(int r, char *message, char **ret_message) {
        if (!ret_message) {
                free(message);
                return r;
        }
        if (!message && r == -ESHUTDOWN)
                message = strdup("the agent connection is closed");
        else if (!message && r == -ECONNRESET)
                message = strdup("the agent connection was lost");
        else if (!message && r == -EMSGSIZE)
                message = strdup("the request is too large for the agent protocol");
        *ret_message = message;
        return r;
}

static int client_call(agent_t *base, const char *method, json_t *params, json_t **ret_result, char **ret_message) {
        client_handle_t *h = (client_handle_t *) base;
        agent_conn_t *c = h->conn;
        if (!method)
                return call_failed(-EINVAL, NULL, ret_message);
        _cleanup_json_ json_t *empty = params ? NULL : json_object();
        if (!params && !empty)
                return call_failed(-ENOMEM, NULL, ret_message);
        _cleanup_json_ json_t *request = json_pack("{s:s, s:O}", "Method", method, "Params", params ? params : empty);
        _cleanup_free_ char *text = request ? json_dumps(request, JSON_COMPACT) : NULL;
        if (!text)
                return call_failed(-EINVAL, NULL, ret_message); /* not UTF-8, or no memory */

        pending_call_t p = { 0 };
        pthread_mutex_lock(&c->lock);
        h->busy++;
        int r = call_locked(c, h, text, strlen(text), &p);
        h->busy--;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);

        if (r < 0) {
                json_decref(p.result);
                return call_failed(r, p.message, ret_message);
        }
        free(p.message);
        if (ret_result)
                *ret_result = p.result;
        else
                json_decref(p.result);
        return 0;
}

/* Drops the handle's streams: no callback reaches them afterwards except one already running. */
static void handle_drop_streams_locked(agent_conn_t *c, client_handle_t *h) {
        for (stream_t **pp = &c->streams; *pp;) {
                stream_t *s = *pp;
                if (s->owner != h) {
                        pp = &s->next;
                        continue;
                }
                *pp = s->next;
                free(s);
        }
}

static void client_close(agent_t *base) {
        client_handle_t *h = (client_handle_t *) base;
        agent_conn_t *c = h->conn;
        pthread_mutex_lock(&c->lock);
        h->closed = h->cancelled = true;
        handle_drop_streams_locked(c, h);
        pthread_cond_broadcast(&c->changed);
        if (h->dispatching && on_io_thread(c)) {
                /* Closed from its own callback: the I/O thread frees it when the callback returns. */
                h->free_after_dispatch = true;
                pthread_mutex_unlock(&c->lock);
                return;
        }
        /* Calls wake up at once (cancelled); a callback in progress is waited for. */
        while (h->busy > 0 || h->dispatching)
                pthread_cond_wait(&c->changed, &c->lock);
        bool last = handle_free_locked(c, h);
        pthread_mutex_unlock(&c->lock);
        if (last)
                conn_finish(c);
}

static void client_cancel(agent_t *base) {
        client_handle_t *h = (client_handle_t *) base;
        agent_conn_t *c = h->conn;
        pthread_mutex_lock(&c->lock);
        h->cancelled = true;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
}

static void client_set_event_handler(agent_t *a, agent_event_cb cb, void *userdata) {
        agent_conn_t *c = ((client_handle_t *) a)->conn;
        pthread_mutex_lock(&c->lock);
        a->on_event = cb;
        a->userdata = userdata;
        pthread_mutex_unlock(&c->lock);
}

static const agent_ops_t client_ops = {
        .call = client_call,
        .close = client_close,
        .cancel = client_cancel,
        .set_event_handler = client_set_event_handler,
};

/* ---- streams ---- */

static client_handle_t *client_handle_of(agent_t *a) {
        return a && a->ops == &client_ops ? (client_handle_t *) a : NULL;
}

/* The checks every stream operation starts with; the stream is returned in *ret. */
static int stream_usable_locked(agent_conn_t *c, client_handle_t *h, uint32_t id, stream_t **ret) {
        if (h->cancelled)
                return -ESHUTDOWN;
        if (c->dead)
                return -ECONNRESET;
        *ret = stream_find_owned(c, h, id);
        return *ret ? 0 : -EBADF;
}

static int stream_open_locked(agent_conn_t *c, client_handle_t *h, uint32_t id, agent_stream_cb on_data,
                              void *userdata) {
        if (h->cancelled)
                return -ESHUTDOWN;
        if (c->dead)
                return -ECONNRESET;
        stream_t *s = stream_find(c, id);
        if (s && s->owner)
                return -EEXIST;
        if (s)
                c->n_unopened--;
        else {
                s = calloc(1, sizeof *s);
                if (!s)
                        return -ENOMEM;
                s->id = id;
                s->next = c->streams;
                c->streams = s;
        }
        s->owner = h;
        s->on_data = on_data;
        s->userdata = userdata;
        if (s->eof_received && !s->ended) {
                s->end_deferred = true;
                conn_wake(c);
        }
        return 0;
}

int agent_stream_open(agent_t *a, uint32_t stream_id, agent_stream_cb on_data, void *userdata) {
        client_handle_t *h = client_handle_of(a);
        if (!h)
                return -EOPNOTSUPP;
        if (stream_id == 0)
                return -EINVAL;
        pthread_mutex_lock(&h->conn->lock);
        int r = stream_open_locked(h->conn, h, stream_id, on_data, userdata);
        pthread_mutex_unlock(&h->conn->lock);
        return r;
}

int agent_stream_credit(agent_t *a, uint32_t stream_id, uint32_t bytes) {
        client_handle_t *h = client_handle_of(a);
        if (!h)
                return -EOPNOTSUPP;
        agent_conn_t *c = h->conn;
        stream_t *s;
        pthread_mutex_lock(&c->lock);
        int r = stream_usable_locked(c, h, stream_id, &s);
        if (r >= 0 && bytes > 0) {
                uint8_t payload[4];
                put_be32(payload, bytes);
                if (s->recv_credit + bytes > UINT32_MAX)
                        r = -EOVERFLOW;
                else if ((r = queue_frame_locked(c, AGENT_FRAME_CREDIT, stream_id, 0, payload, sizeof payload)) >= 0)
                        s->recv_credit += bytes;
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

static int stream_write_locked(agent_conn_t *c, client_handle_t *h, uint32_t id, const void *data, size_t len,
                               int timeout_ms) {
        struct timespec deadline = timespec_from_ns(deadline_after(timeout_ms));
        bool expired = timeout_ms == 0 || on_io_thread(c); /* credit only arrives through the I/O thread */
        for (;;) {
                stream_t *s;
                int r = stream_usable_locked(c, h, id, &s);
                if (r < 0)
                        return r;
                if (s->eof_sent)
                        return -EPIPE;
                if (len == 0)
                        return 0;
                if (s->send_credit > 0) {
                        size_t n = (size_t) min_u64(min_u64(len, s->send_credit), AGENT_FRAME_MAX_PAYLOAD);
                        r = queue_frame_locked(c, AGENT_FRAME_DATA, id, 0, data, n);
                        if (r < 0)
                                return r;
                        s->send_credit -= n;
                        return (int) n;
                }
                if (expired)
                        return -EAGAIN;
                if (timeout_ms < 0)
                        pthread_cond_wait(&c->changed, &c->lock);
                else if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT)
                        expired = true;
        }
}

int agent_stream_write(agent_t *a, uint32_t stream_id, const void *data, size_t len, int timeout_ms) {
        client_handle_t *h = client_handle_of(a);
        if (!h)
                return -EOPNOTSUPP;
        if (!data && len > 0)
                return -EINVAL;
        agent_conn_t *c = h->conn;
        pthread_mutex_lock(&c->lock);
        h->busy++;
        int r = stream_write_locked(c, h, stream_id, data, len, timeout_ms);
        h->busy--;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
        return r;
}

int agent_stream_eof(agent_t *a, uint32_t stream_id) {
        client_handle_t *h = client_handle_of(a);
        if (!h)
                return -EOPNOTSUPP;
        agent_conn_t *c = h->conn;
        stream_t *s;
        pthread_mutex_lock(&c->lock);
        int r = stream_usable_locked(c, h, stream_id, &s);
        if (r >= 0 && !s->eof_sent && (r = queue_frame_locked(c, AGENT_FRAME_EOF, stream_id, 0, NULL, 0)) >= 0) {
                s->eof_sent = true;
                pthread_cond_broadcast(&c->changed); /* writers waiting for credit get -EPIPE */
        }
        pthread_mutex_unlock(&c->lock);
        return r;
}

void agent_stream_close(agent_t *a, uint32_t stream_id) {
        client_handle_t *h = client_handle_of(a);
        if (!h)
                return;
        agent_conn_t *c = h->conn;
        pthread_mutex_lock(&c->lock);
        stream_t *s = stream_find_owned(c, h, stream_id);
        if (s) {
                stream_unlink_free(c, s);
                pthread_cond_broadcast(&c->changed); /* writers waiting for credit get -EBADF */
        }
        /* The callback in progress may be this stream's. */
        while (h->dispatching && !on_io_thread(c))
                pthread_cond_wait(&c->changed, &c->lock);
        pthread_mutex_unlock(&c->lock);
}
