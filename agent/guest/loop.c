/* The guest agent's event loop (see loop.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "macro.h"

struct loop_io {
        loop_t *loop;
        loop_io_t *next;
        int fd;
        uint32_t events;
        bool dead;
        bool registered; /* in the epoll set; false while events is 0 */
        loop_io_fn fn;
        void *userdata;
};

struct loop_timer {
        loop_t *loop;
        loop_timer_t *next;
        int64_t deadline_ns;
        bool dead;
        loop_timer_fn fn;
        void *userdata;
};

struct loop {
        int epoll_fd;
        loop_io_t *ios;
        loop_timer_t *timers;
        bool quit;
        int code;
};

static int64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int loop_new(loop_t **ret) {
        loop_t *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epoll_fd < 0) {
                int r = -errno;
                free(l);
                return r;
        }
        *ret = l;
        return 0;
}

void loop_free(loop_t *l) {
        if (!l)
                return;
        while (l->ios) {
                loop_io_t *io = l->ios;
                l->ios = io->next;
                free(io);
        }
        while (l->timers) {
                loop_timer_t *t = l->timers;
                l->timers = t->next;
                free(t);
        }
        close(l->epoll_fd);
        free(l);
}

int loop_add_io(loop_t *l, int fd, uint32_t events, loop_io_fn fn, void *userdata, loop_io_t **ret) {
        loop_io_t *io = calloc(1, sizeof *io);
        if (!io)
                return -ENOMEM;
        *io = (loop_io_t){ .loop = l, .fd = fd, .events = events, .fn = fn, .userdata = userdata };
        struct epoll_event ev = { .events = events, .data.ptr = io };
        if (events) {
                if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        int r = -errno;
                        free(io);
                        return r;
                }
                io->registered = true;
        }
        io->next = l->ios;
        l->ios = io;
        *ret = io;
        return 0;
}

int loop_io_set_events(loop_io_t *io, uint32_t events) {
        if (io->dead || io->events == events)
                return 0;
        struct epoll_event ev = { .events = events, .data.ptr = io };
        /* No events means out of the set: epoll would still report hang-ups and errors, which on a
         * pipe nobody wants to read yet would spin the loop. */
        int op = !events ? EPOLL_CTL_DEL : io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(io->loop->epoll_fd, op, io->fd, &ev) < 0)
                return -errno;
        io->registered = events != 0;
        io->events = events;
        return 0;
}

uint32_t loop_io_get_events(const loop_io_t *io) {
        return io->events;
}

void loop_io_free(loop_io_t *io) {
        if (!io || io->dead)
                return;
        if (io->registered)
                epoll_ctl(io->loop->epoll_fd, EPOLL_CTL_DEL, io->fd, NULL);
        io->dead = true;
        io->fd = -1;
}

int loop_add_timer(loop_t *l, int64_t delay_ms, loop_timer_fn fn, void *userdata, loop_timer_t **ret) {
        loop_timer_t *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        if (delay_ms < 0)
                delay_ms = 0;
        if (delay_ms > INT64_MAX / 2000000)
                delay_ms = INT64_MAX / 2000000;
        *t = (loop_timer_t){
                .loop = l, .deadline_ns = now_ns() + delay_ms * 1000000LL, .fn = fn, .userdata = userdata
        };
        t->next = l->timers;
        l->timers = t;
        *ret = t;
        return 0;
}

void loop_timer_free(loop_timer_t *t) {
        if (t)
                t->dead = true;
}

void loop_quit(loop_t *l, int code) {
        l->quit = true;
        l->code = code;
}

/* Frees the sources and timers detached during the last iteration. */
static void loop_sweep(loop_t *l) {
        for (loop_io_t **p = &l->ios; *p;) {
                loop_io_t *io = *p;
                if (io->dead) {
                        *p = io->next;
                        free(io);
                } else
                        p = &io->next;
        }
        for (loop_timer_t **p = &l->timers; *p;) {
                loop_timer_t *t = *p;
                if (t->dead) {
                        *p = t->next;
                        free(t);
                } else
                        p = &t->next;
        }
}

static int loop_timeout_ms(loop_t *l) {
        int64_t next = -1, now = now_ns();
        for (loop_timer_t *t = l->timers; t; t = t->next)
                if (!t->dead && (next < 0 || t->deadline_ns < next))
                        next = t->deadline_ns;
        if (next < 0)
                return -1;
        if (next <= now)
                return 0;
        int64_t ms = (next - now + 999999) / 1000000;
        return ms > 3600000 ? 3600000 : (int) ms;
}

int loop_run(loop_t *l) {
        struct epoll_event events[64];
        while (!l->quit) {
                int n = epoll_wait(l->epoll_fd, events, (int) ELEMENTSOF(events), loop_timeout_ms(l));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (int i = 0; i < n && !l->quit; i++) {
                        loop_io_t *io = events[i].data.ptr;
                        if (!io->dead)
                                io->fn(io, io->fd, events[i].events, io->userdata);
                }
                int64_t now = now_ns();
                for (loop_timer_t *t = l->timers; t && !l->quit; t = t->next)
                        if (!t->dead && t->deadline_ns <= now) {
                                t->dead = true;
                                t->fn(t, t->userdata);
                        }
                loop_sweep(l);
        }
        return l->code;
}
