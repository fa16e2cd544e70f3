/* Stdio streams between the host and the guest's processes, with the protocol's credit rules.
 *
 * Each process has a stdin stream (host → process) and stdout/stderr streams (process → host),
 * or with a terminal stdin and stdout on one pty master and no stderr. Each direction has a
 * bounded buffer in the agent:
 *   - output is read from the process's pipe only while its buffer has room, and sent only as far
 *     as the host granted CREDIT and the transport is not congested; a process whose output
 *     nobody reads fills the pipe and blocks, and nobody else waits for it;
 *   - the agent grants STDIO_BUFFER bytes of stdin credit when a stream opens, and more as it
 *     writes into the process. DATA beyond the credit is a protocol error.
 * Stream ids are unique for the agent's lifetime. When the host connection changes, all credit
 * is void: the host grants output credit again, and the agent re-grants stdin credit on HELLO. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "session.h"

#define STDIO_BUFFER (64u * 1024)

typedef struct stdio_hub stdio_hub_t;
typedef struct stdio stdio_t;

int stdio_hub_new(loop_t *loop, session_t *session, stdio_hub_t **ret);
/* Frees the hub; every stdio must be freed first. Accepts NULL. */
void stdio_hub_free(stdio_hub_t *hub);

/* The session hooks of guest_ops_t. stdio_hub_data returns -EPROTO when the host sent more than
 * its credit. */
int stdio_hub_data(stdio_hub_t *hub, uint32_t stream, const uint8_t *data, size_t len);
void stdio_hub_eof(stdio_hub_t *hub, uint32_t stream);
void stdio_hub_credit(stdio_hub_t *hub, uint32_t stream, uint32_t bytes);
void stdio_hub_connection_reset(stdio_hub_t *hub);
void stdio_hub_connected(stdio_hub_t *hub);
void stdio_hub_output_ready(stdio_hub_t *hub);

/* Creates the streams of a new process. Without a terminal it makes three pipes and returns the
 * process's ends in child_fds (stdin, stdout, stderr; the caller closes them after fork with
 * stdio_close_child_fds); with one, child_fds are -1 and the pty master comes by stdio_set_pty. */
int stdio_new(stdio_hub_t *hub, bool terminal, stdio_t **ret, int child_fds[3]);
void stdio_close_child_fds(int child_fds[3]);
/* Hands the pty master (owned from now on) to a terminal stdio. */
int stdio_set_pty(stdio_t *io, int master);
/* Announces the streams: grants the initial stdin credit. Call once the host knows the ids. */
void stdio_open(stdio_t *io);
/* {"Stdin":a,"Stdout":b,"Stderr":c} (no Stderr with a terminal). */
json_t *stdio_streams_json(const stdio_t *io);
bool stdio_is_terminal(const stdio_t *io);
/* TIOCSWINSZ on the pty; -ENOTTY without one. */
int stdio_set_winsize(stdio_t *io, unsigned height, unsigned width);
/* Closes the streams; buffered data is lost. Accepts NULL. */
void stdio_free(stdio_t *io);
