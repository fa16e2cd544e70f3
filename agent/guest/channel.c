/* The byte transport under a session (see channel.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel.h"
#include "log.h"
#include "macro.h"

/* Answers and events queued for a host that does not read, beyond which the host counts as gone. */
#define CONTROL_QUEUE_MAX (64u << 20)

typedef struct chunk {
        struct chunk *next;
        uint8_t *data;
        size_t size, offset;
} chunk_t;

typedef struct queue {
        chunk_t *head, *tail;
        size_t bytes;
} queue_t;

struct channel {
        loop_t *loop;
        session_t *session;
        bool is_port;
        int listen_fd;
        loop_io_t *listen_io;
        int fd; /* the port, or the current connection */
        loop_io_t *io;
        loop_timer_t *retry; /* port: periodic read while the host is away */
        bool hung_up;        /* port: the last read saw no host */
        bool broken;         /* connection: a write failed; the next event closes it */
        bool starved;        /* stdio output waited for room */
        queue_t control, data;
        chunk_t *writing; /* partly written chunk, whichever queue it came from */
};

static void queue_push(queue_t *q, chunk_t *c) {
        if (q->tail)
                q->tail->next = c;
        else
                q->head = c;
        q->tail = c;
        q->bytes += c->size;
}

static chunk_t *queue_pop(queue_t *q) {
        chunk_t *c = q->head;
        if (!c)
                return NULL;
        q->head = c->next;
        if (!q->head)
                q->tail = NULL;
        c->next = NULL;
        return c;
}

static void chunk_free(chunk_t *c) {
        if (c) {
                free(c->data);
                free(c);
        }
}

static void queue_clear(queue_t *q) {
        for (chunk_t *c; (c = queue_pop(q));)
                chunk_free(c);
        q->bytes = 0;
}

static void channel_discard_output(void *ud) {
        channel_t *c = ud;
        queue_clear(&c->control);
        queue_clear(&c->data);
        /* On a socket a frame half on the wire must be finished, or the peer's decoder loses its
         * place. On a port the output is discarded only when the host changed: the new host must
         * see our HELLO first, not the rest of a frame meant for its predecessor. */
        if (c->writing && (c->writing->offset == 0 || c->is_port)) {
                chunk_free(c->writing);
                c->writing = NULL;
        }
}

static void channel_write_some(channel_t *c) {
        if (c->fd < 0 || c->broken)
                return;
        for (;;) {
                if (!c->writing) {
                        c->writing = queue_pop(&c->control);
                        if (!c->writing) {
                                c->writing = queue_pop(&c->data);
                                if (c->writing)
                                        c->data.bytes -= c->writing->size;
                        } else
                                c->control.bytes -= c->writing->size;
                }
                if (!c->writing)
                        break;
                chunk_t *w = c->writing;
                ssize_t n = write(c->fd, w->data + w->offset, w->size - w->offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN) {
                                log_debug_errno(errno, "Write to the host failed: %m");
                                c->broken = !c->is_port;
                        }
                        break;
                }
                w->offset += (size_t) n;
                if (w->offset == w->size) {
                        chunk_free(w);
                        c->writing = NULL;
                }
        }
        if (c->starved && c->data.bytes < SESSION_CONGESTED_BYTES / 2) {
                c->starved = false;
                session_writable(c->session);
        }
}

static int channel_send(void *ud, uint8_t *frame, size_t size) {
        channel_t *c = ud;
        chunk_t *chunk = calloc(1, sizeof *chunk);
        if (!chunk) {
                free(frame);
                return -ENOMEM;
        }
        chunk->data = frame;
        chunk->size = size;
        /* DATA frames (type byte at offset 8) queue behind everything else. */
        bool is_data = size > 8 && frame[8] == AGENT_FRAME_DATA;
        if (!is_data && c->control.bytes > CONTROL_QUEUE_MAX) {
                /* A host that reads nothing while it keeps asking: it gets no more answers. */
                log_error("The host does not read; dropping an answer");
                c->broken = !c->is_port;
                chunk_free(chunk);
                return -ENOBUFS;
        }
        queue_push(is_data ? &c->data : &c->control, chunk);
        if (is_data && c->data.bytes >= SESSION_CONGESTED_BYTES / 2)
                c->starved = true;
        channel_write_some(c);
        return 0;
}

static size_t channel_queued(void *ud) {
        channel_t *c = ud;
        return c->data.bytes;
}

static void connection_close(channel_t *c);

static void channel_close_connection(void *ud) {
        connection_close(ud);
}

static const session_transport_t port_transport = {
        .send = channel_send,
        .queued = channel_queued,
        .discard_output = channel_discard_output,
        .close = NULL,
};

static const session_transport_t socket_transport = {
        .send = channel_send,
        .queued = channel_queued,
        .discard_output = channel_discard_output,
        .close = channel_close_connection,
};

static void port_retry(loop_timer_t *t, void *ud);

/* Reads until the fd would block; returns 0 on end of input (hang-up), 1 otherwise. */
static int channel_read_all(channel_t *c) {
        uint8_t buf[65536];
        for (;;) {
                if (c->fd < 0)
                        return 1;
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 1;
                        log_debug_errno(errno, "Read from the host failed: %m");
                        return 0;
                }
                if (n == 0)
                        return 0;
                if (c->is_port && c->hung_up) {
                        log_debug("Host connected to the port");
                        c->hung_up = false;
                }
                session_receive(c->session, buf, (size_t) n);
        }
}

static void port_hang_up(channel_t *c) {
        if (!c->hung_up) {
                log_debug("Host went away from the port");
                c->hung_up = true;
                session_disconnected(c->session);
        }
        /* The port reports "readable" (EOF) for as long as no host is there, which the edge-triggered
         * watch turns into silence; poll now and then in case a wake-up is missed. */
        if (!c->retry && loop_add_timer(c->loop, 1000, port_retry, c, &c->retry) < 0)
                c->retry = NULL;
}

static void port_retry(loop_timer_t *t, void *ud) {
        channel_t *c = ud;
        c->retry = NULL;
        if (channel_read_all(c) == 0)
                port_hang_up(c);
        channel_write_some(c);
}

static void port_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        channel_t *c = ud;
        if (channel_read_all(c) == 0)
                port_hang_up(c);
        if (events & EPOLLOUT)
                channel_write_some(c);
}

static void connection_close(channel_t *c) {
        if (c->fd < 0)
                return;
        loop_io_free(c->io);
        c->io = NULL;
        close(c->fd);
        c->fd = -1;
        c->broken = false;
        chunk_free(c->writing);
        c->writing = NULL;
        queue_clear(&c->control);
        queue_clear(&c->data);
}

static void connection_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        channel_t *c = ud;
        if (c->broken || channel_read_all(c) == 0) {
                log_debug("Host connection closed");
                connection_close(c);
                session_disconnected(c->session);
                return;
        }
        if (events & EPOLLOUT)
                channel_write_some(c);
}

static void listen_event(loop_io_t *io, int fd, uint32_t events, void *ud) {
        channel_t *c = ud;
        int conn = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accept() failed: %m");
                return;
        }
        if (c->fd >= 0) {
                log_debug("A new host connection replaces the current one");
                connection_close(c);
                session_disconnected(c->session);
        }
        c->fd = conn;
        int r = loop_add_io(c->loop, conn, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, connection_event, c, &c->io);
        if (r < 0) {
                log_error_errno(r, "Cannot watch the host connection: %m");
                close(conn);
                c->fd = -1;
        }
}

static channel_t *channel_alloc(loop_t *loop, session_t *s) {
        channel_t *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->loop = loop;
        c->session = s;
        c->fd = c->listen_fd = -1;
        return c;
}

int channel_open_port(loop_t *loop, session_t *s, const char *path, channel_t **ret) {
        channel_t *c = channel_alloc(loop, s);
        if (!c)
                return -ENOMEM;
        c->is_port = true;
        c->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (c->fd < 0) {
                int r = -errno;
                free(c);
                return r;
        }
        int r = loop_add_io(loop, c->fd, EPOLLIN | EPOLLOUT | EPOLLET, port_event, c, &c->io);
        if (r < 0) {
                close(c->fd);
                free(c);
                return r;
        }
        session_set_transport(s, &port_transport, c);
        *ret = c;
        return 0;
}

int channel_listen(loop_t *loop, session_t *s, const char *path, channel_t **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        channel_t *c = channel_alloc(loop, s);
        if (!c)
                return -ENOMEM;
        int r;
        c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->listen_fd < 0) {
                r = -errno;
                goto fail;
        }
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                unlink(path);
        if (bind(c->listen_fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(c->listen_fd, 4) < 0) {
                r = -errno;
                goto fail;
        }
        r = loop_add_io(loop, c->listen_fd, EPOLLIN, listen_event, c, &c->listen_io);
        if (r < 0)
                goto fail;
        session_set_transport(s, &socket_transport, c);
        *ret = c;
        return 0;
fail:
        if (c->listen_fd >= 0)
                close(c->listen_fd);
        free(c);
        return r;
}

void channel_flush(channel_t *c) {
        if (c)
                channel_write_some(c);
}

bool channel_is_idle(const channel_t *c) {
        return !c || (!c->writing && !c->control.head && !c->data.head) || c->fd < 0;
}

void channel_free(channel_t *c) {
        if (!c)
                return;
        session_set_transport(c->session, NULL, NULL);
        loop_timer_free(c->retry);
        connection_close(c);
        loop_io_free(c->listen_io);
        if (c->listen_fd >= 0)
                close(c->listen_fd);
        free(c);
}
