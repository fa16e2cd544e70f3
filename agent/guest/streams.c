/* Stdio streams with credit-based flow control (see stdio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "streams.h"

/* Credit is given back in batches of this size, or when the buffer empties. */
#define GRANT_BATCH (16u * 1024)
/* The largest DATA frame the agent sends. */
#define DATA_CHUNK (32u * 1024)
/* A host may grant more than it needs; cap the sum so it cannot overflow. */
#define CREDIT_MAX (1u << 30)

typedef struct stream {
        uint32_t id;
        uint8_t *buf;
        size_t len;
        uint32_t credit;        /* output: granted by the host; input: granted by us, not yet used */
        uint32_t grant_pending; /* input: written into the process, not yet granted back */
        bool opened;            /* input: the host knows the stream (initial credit given) */
        bool eof;               /* output: the fd reached its end; input: the host sent EOF */
        bool eof_sent;          /* output: EOF frame sent */
        bool closed;            /* input: the process side is closed; DATA is discarded */
} stream_t;

struct stdio {
        stdio_hub_t *hub;
        stdio_t *next;
        bool terminal;
        int in_fd, out_fd, err_fd; /* with a terminal, in_fd == out_fd == the pty master */
        loop_io_t *in_io, *out_io, *err_io;
        stream_t in, out, err;
};

struct stdio_hub {
        loop_t *loop;
        session_t *session;
        stdio_t *list;
        uint32_t next_id;
};

int stdio_hub_new(loop_t *loop, session_t *session, stdio_hub_t **ret) {
        stdio_hub_t *hub = calloc(1, sizeof *hub);
        if (!hub)
                return -ENOMEM;
        hub->loop = loop;
        hub->session = session;
        hub->next_id = 1;
        *ret = hub;
        return 0;
}

void stdio_hub_free(stdio_hub_t *hub) {
        free(hub);
}

static uint32_t new_id(stdio_hub_t *hub) {
        uint32_t id = hub->next_id++;
        if (hub->next_id == 0)
                hub->next_id = 1;
        return id;
}

static void io_update(stdio_t *io);

static void pump_output(stdio_t *io, stream_t *s) {
        session_t *session = io->hub->session;
        while (s->len > 0 && s->credit > 0) {
                size_t budget = session_send_budget(session);
                if (budget == 0)
                        break;
                size_t n = s->len;
                if (n > s->credit)
                        n = s->credit;
                if (n > DATA_CHUNK)
                        n = DATA_CHUNK;
                if (n > budget)
                        n = budget;
                if (session_send_data(session, s->id, s->buf, n) < 0)
                        break;
                memmove(s->buf, s->buf + n, s->len - n);
                s->len -= n;
                s->credit -= (uint32_t) n;
        }
        if (s->eof && s->len == 0 && !s->eof_sent && session_is_connected(session) &&
            session_send_eof(session, s->id) >= 0)
                s->eof_sent = true;
}

static void grant(stdio_t *io, bool force) {
        stream_t *s = &io->in;
        if (!s->opened || s->eof || s->grant_pending == 0 || (!force && s->grant_pending < GRANT_BATCH))
                return;
        if (session_send_credit(io->hub->session, s->id, s->grant_pending) >= 0) {
                s->credit += s->grant_pending;
                s->grant_pending = 0;
        }
}

/* The process side of stdin is done: close the pipe, or send the terminal its EOF character. */
static void finish_input(stdio_t *io) {
        if (io->in.closed)
                return;
        io->in.closed = true;
        if (io->terminal) {
                if (io->in_fd >= 0) {
                        struct termios t;
                        char veof = tcgetattr(io->in_fd, &t) == 0 && t.c_cc[VEOF] ? (char) t.c_cc[VEOF] : 4;
                        ssize_t k = write(io->in_fd, &veof, 1);
                        (void) k;
                }
                return;
        }
        loop_io_free(io->in_io);
        io->in_io = NULL;
        if (io->in_fd >= 0)
                close(io->in_fd);
        io->in_fd = -1;
}

static void write_input(stdio_t *io) {
        stream_t *s = &io->in;
        while (s->len > 0 && !s->closed && io->in_fd >= 0) {
                ssize_t n = write(io->in_fd, s->buf, s->len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        /* The process closed its stdin (EPIPE) or the terminal went away (EIO). */
                        log_debug_errno(errno, "Stream %u: the process no longer reads stdin: %m", s->id);
                        s->grant_pending += (uint32_t) s->len;
                        s->len = 0;
                        finish_input(io);
                        break;
                }
                memmove(s->buf, s->buf + n, s->len - (size_t) n);
                s->len -= (size_t) n;
                s->grant_pending += (uint32_t) n;
        }
        grant(io, s->len == 0);
        if (s->eof && s->len == 0)
                finish_input(io);
}

/* Reads what fits into an output buffer; marks its end. */
static void read_output(stdio_t *io, int fd, stream_t *s) {
        while (!s->eof && s->len < STDIO_BUFFER) {
                ssize_t n = read(fd, s->buf + s->len, STDIO_BUFFER - s->len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        /* EIO: the terminal's last slave closed. */
                        if (errno != EIO)
                                log_debug_errno(errno, "Stream %u: read failed: %m", s->id);
                        s->eof = true;
                        break;
                }
                if (n == 0)
                        s->eof = true;
                else
                        s->len += (size_t) n;
        }
}

static void close_output(stdio_t *io, stream_t *s) {
        if (s == &io->err) {
                loop_io_free(io->err_io);
                io->err_io = NULL;
                if (io->err_fd >= 0)
                        close(io->err_fd);
                io->err_fd = -1;
                return;
        }
        if (io->terminal) {
                /* Nobody holds the terminal any more: stdin has nowhere to go either. */
                io->in.closed = true;
                io->in.grant_pending += (uint32_t) io->in.len;
                io->in.len = 0;
                grant(io, true);
        }
        loop_io_free(io->out_io);
        io->out_io = NULL;
        if (io->out_fd >= 0)
                close(io->out_fd);
        if (io->in_fd == io->out_fd)
                io->in_fd = -1;
        io->out_fd = -1;
}

/* Recomputes what each fd is watched for: output while its buffer has room, input while there
 * is something to write. */
static void io_update(stdio_t *io) {
        if (io->out.eof && io->out_fd >= 0)
                close_output(io, &io->out);
        if (io->err.eof && io->err_fd >= 0)
                close_output(io, &io->err);
        uint32_t out = io->out_fd >= 0 && io->out.len < STDIO_BUFFER ? EPOLLIN : 0;
        uint32_t in = io->in_fd >= 0 && io->in.len > 0 && !io->in.closed ? EPOLLOUT : 0;
        if (io->terminal) {
                if (io->out_io)
                        loop_io_set_events(io->out_io, out | in);
        } else {
                if (io->out_io)
                        loop_io_set_events(io->out_io, out);
                if (io->in_io)
                        loop_io_set_events(io->in_io, in);
        }
        if (io->err_io)
                loop_io_set_events(io->err_io, io->err_fd >= 0 && io->err.len < STDIO_BUFFER ? EPOLLIN : 0);
}

static void io_pump(stdio_t *io) {
        pump_output(io, &io->out);
        if (!io->terminal)
                pump_output(io, &io->err);
        io_update(io);
}

static void out_event(loop_io_t *lio, int fd, uint32_t events, void *ud) {
        stdio_t *io = ud;
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                read_output(io, fd, &io->out);
        if (io->terminal && (events & EPOLLOUT))
                write_input(io);
        io_pump(io);
}

static void err_event(loop_io_t *lio, int fd, uint32_t events, void *ud) {
        stdio_t *io = ud;
        read_output(io, fd, &io->err);
        io_pump(io);
}

static void in_event(loop_io_t *lio, int fd, uint32_t events, void *ud) {
        stdio_t *io = ud;
        write_input(io);
        io_update(io);
}

static stdio_t *find(stdio_hub_t *hub, uint32_t id, stream_t **ret) {
        if (id == 0)
                return NULL;
        for (stdio_t *io = hub->list; io; io = io->next) {
                stream_t *s = io->in.id == id    ? &io->in
                              : io->out.id == id ? &io->out
                              : io->err.id == id ? &io->err
                                                 : NULL;
                if (s) {
                        *ret = s;
                        return io;
                }
        }
        return NULL;
}

int stdio_hub_data(stdio_hub_t *hub, uint32_t id, const uint8_t *data, size_t len) {
        stream_t *s;
        stdio_t *io = find(hub, id, &s);
        if (!io || s != &io->in)
                return 0; /* a stream that ended, or one the host has confused: nothing to do */
        if (len > s->credit)
                return -EPROTO;
        s->credit -= (uint32_t) len;
        if (s->eof)
                return 0;
        if (s->closed) {
                /* Nobody reads: throw it away but give the credit back, so the host's writer drains. */
                s->grant_pending += (uint32_t) len;
                grant(io, true);
                return 0;
        }
        memcpy(s->buf + s->len, data, len);
        s->len += len;
        write_input(io);
        io_update(io);
        return 0;
}

void stdio_hub_eof(stdio_hub_t *hub, uint32_t id) {
        stream_t *s;
        stdio_t *io = find(hub, id, &s);
        if (!io || s != &io->in || s->eof)
                return;
        s->eof = true;
        if (s->len == 0)
                finish_input(io);
        io_update(io);
}

void stdio_hub_credit(stdio_hub_t *hub, uint32_t id, uint32_t bytes) {
        stream_t *s;
        stdio_t *io = find(hub, id, &s);
        if (!io || s == &io->in)
                return;
        s->credit = bytes > CREDIT_MAX - s->credit ? CREDIT_MAX : s->credit + bytes;
        io_pump(io);
}

void stdio_hub_connection_reset(stdio_hub_t *hub) {
        for (stdio_t *io = hub->list; io; io = io->next) {
                io->out.credit = io->err.credit = 0;
                io->out.eof_sent = io->err.eof_sent = false;
                io->in.credit = 0;
                io->in.grant_pending = 0;
        }
}

void stdio_hub_connected(stdio_hub_t *hub) {
        for (stdio_t *io = hub->list; io; io = io->next) {
                stream_t *s = &io->in;
                if (s->opened && !s->eof) {
                        s->grant_pending = (uint32_t) (STDIO_BUFFER - s->len);
                        grant(io, true);
                }
                io_pump(io);
        }
}

void stdio_hub_output_ready(stdio_hub_t *hub) {
        for (stdio_t *io = hub->list; io; io = io->next)
                io_pump(io);
}

static int set_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

void stdio_close_child_fds(int child_fds[3]) {
        for (int i = 0; i < 3; i++)
                if (child_fds[i] >= 0) {
                        close(child_fds[i]);
                        child_fds[i] = -1;
                }
}

static int alloc_stream(stream_t *s, uint32_t id) {
        s->id = id;
        s->buf = malloc(STDIO_BUFFER);
        return s->buf ? 0 : -ENOMEM;
}

int stdio_new(stdio_hub_t *hub, bool terminal, stdio_t **ret, int child_fds[3]) {
        stdio_t *io = calloc(1, sizeof *io);
        if (!io)
                return -ENOMEM;
        io->hub = hub;
        io->terminal = terminal;
        io->in_fd = io->out_fd = io->err_fd = -1;
        child_fds[0] = child_fds[1] = child_fds[2] = -1;
        int r = alloc_stream(&io->in, new_id(hub));
        if (r >= 0)
                r = alloc_stream(&io->out, new_id(hub));
        if (r >= 0 && !terminal)
                r = alloc_stream(&io->err, new_id(hub));
        if (r < 0)
                goto fail;
        if (!terminal) {
                int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
                if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                        r = -errno;
                        int fds[] = { in[0], in[1], out[0], out[1], err[0], err[1] };
                        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                                if (fds[i] >= 0)
                                        close(fds[i]);
                        goto fail;
                }
                io->in_fd = in[1];
                io->out_fd = out[0];
                io->err_fd = err[0];
                child_fds[0] = in[0];
                child_fds[1] = out[1];
                child_fds[2] = err[1];
                if ((r = set_nonblock(io->in_fd)) < 0 || (r = set_nonblock(io->out_fd)) < 0 ||
                    (r = set_nonblock(io->err_fd)) < 0)
                        goto fail;
                if ((r = loop_add_io(hub->loop, io->in_fd, 0, in_event, io, &io->in_io)) < 0 ||
                    (r = loop_add_io(hub->loop, io->out_fd, EPOLLIN, out_event, io, &io->out_io)) < 0 ||
                    (r = loop_add_io(hub->loop, io->err_fd, EPOLLIN, err_event, io, &io->err_io)) < 0)
                        goto fail;
        }
        io->next = hub->list;
        hub->list = io;
        *ret = io;
        return 0;
fail:
        stdio_close_child_fds(child_fds);
        stdio_free(io); /* not linked yet: only its own resources go */
        return r;
}

int stdio_set_pty(stdio_t *io, int master) {
        if (!io->terminal || io->out_fd >= 0) {
                close(master);
                return -EINVAL;
        }
        int r = set_nonblock(master);
        if (r < 0) {
                close(master);
                return r;
        }
        io->in_fd = io->out_fd = master;
        r = loop_add_io(io->hub->loop, master, EPOLLIN, out_event, io, &io->out_io);
        if (r < 0) {
                close(master);
                io->in_fd = io->out_fd = -1;
                return r;
        }
        io_update(io);
        return 0;
}

void stdio_open(stdio_t *io) {
        if (io->in.opened)
                return;
        io->in.opened = true;
        io->in.grant_pending = (uint32_t) (STDIO_BUFFER - io->in.len);
        grant(io, true);
        io_pump(io);
}

json_t *stdio_streams_json(const stdio_t *io) {
        if (io->terminal)
                return json_pack("{s:I, s:I}", "Stdin", (json_int_t) io->in.id, "Stdout", (json_int_t) io->out.id);
        return json_pack("{s:I, s:I, s:I}", "Stdin", (json_int_t) io->in.id, "Stdout", (json_int_t) io->out.id,
                         "Stderr", (json_int_t) io->err.id);
}

bool stdio_is_terminal(const stdio_t *io) {
        return io->terminal;
}

int stdio_set_winsize(stdio_t *io, unsigned height, unsigned width) {
        if (!io->terminal)
                return -ENOTTY;
        if (io->out_fd < 0)
                return -ESRCH;
        struct winsize ws = { .ws_row = (unsigned short) height, .ws_col = (unsigned short) width };
        if (ioctl(io->out_fd, TIOCSWINSZ, &ws) < 0)
                return -errno;
        return 0;
}

void stdio_free(stdio_t *io) {
        if (!io)
                return;
        for (stdio_t **p = &io->hub->list; *p; p = &(*p)->next)
                if (*p == io) {
                        *p = io->next;
                        break;
                }
        loop_io_free(io->in_io);
        loop_io_free(io->out_io);
        loop_io_free(io->err_io);
        if (io->in_fd >= 0 && io->in_fd != io->out_fd)
                close(io->in_fd);
        if (io->out_fd >= 0)
                close(io->out_fd);
        if (io->err_fd >= 0)
                close(io->err_fd);
        free(io->in.buf);
        free(io->out.buf);
        free(io->err.buf);
        free(io);
}
