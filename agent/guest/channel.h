/* The byte transport under a session: the virtio-serial port in the VM, or a listening Unix socket
 * in test mode (one connection at a time; a new one replaces the old, as a host reconnecting on
 * the port would). Non-blocking; control frames (answers, events, credits) are written ahead of
 * queued stdio data, so a flood of output never delays an RPC answer. */
#pragma once

#include "loop.h"
#include "session.h"

typedef struct channel channel_t;

/* Serves the session on a character device (a /dev/vportNpM). */
int channel_open_port(loop_t *loop, session_t *s, const char *path, channel_t **ret);
/* Serves the session on connections to a new Unix socket at path (an old socket file is replaced). */
int channel_listen(loop_t *loop, session_t *s, const char *path, channel_t **ret);
/* Writes what it can of the queued output without waiting (before a power-off). */
void channel_flush(channel_t *c);
/* True when nothing is queued. */
bool channel_is_idle(const channel_t *c);
/* Closes everything; accepts NULL. */
void channel_free(channel_t *c);
