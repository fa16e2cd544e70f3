/* The guest agent's event loop: epoll I/O sources and one-shot timers, single-threaded.
 *
 * Callbacks may add and free any source or timer, including the one running: freeing only
 * detaches it, and the memory goes at the end of the iteration, so no callback ever runs on a
 * freed object. */
#pragma once

#include <stdint.h>
#include <sys/epoll.h>

typedef struct loop loop_t;
typedef struct loop_io loop_io_t;
typedef struct loop_timer loop_timer_t;

typedef void (*loop_io_fn)(loop_io_t *io, int fd, uint32_t events, void *userdata);
typedef void (*loop_timer_fn)(loop_timer_t *timer, void *userdata);

int loop_new(loop_t **ret);
/* Frees the loop and every source and timer still attached; accepts NULL. */
void loop_free(loop_t *l);

/* Watches fd (not owned) for events (EPOLLIN, EPOLLOUT, EPOLLET...; 0: not yet). */
int loop_add_io(loop_t *l, int fd, uint32_t events, loop_io_fn fn, void *userdata, loop_io_t **ret);
/* Changes the watched events; a no-op when they are unchanged. 0 takes the fd out of the epoll
 * set altogether (no hang-up or error reports either) until events are set again. */
int loop_io_set_events(loop_io_t *io, uint32_t events);
uint32_t loop_io_get_events(const loop_io_t *io);
/* Stops watching; accepts NULL. Call before closing the fd. */
void loop_io_free(loop_io_t *io);

/* Calls fn once, delay_ms milliseconds from now (monotonic clock). */
int loop_add_timer(loop_t *l, int64_t delay_ms, loop_timer_fn fn, void *userdata, loop_timer_t **ret);
/* Cancels a timer that has not fired; accepts NULL. A fired timer is freed by the loop after its
 * callback returns: freeing it inside the callback is harmless, afterwards it is gone. */
void loop_timer_free(loop_timer_t *t);

/* Runs until loop_quit; returns the code given to it, or a negative errno if epoll fails. */
int loop_run(loop_t *l);
void loop_quit(loop_t *l, int code);
