/* Host side of the agent wire protocol (docs/agent-protocol.md): one connection to a guest agent
 * over a connected stream socket (the QEMU chardev socket of the VM's virtio-serial port, or
 * vsock), and any number of agent_t handles sharing it.
 *
 * Each connection owns one I/O thread: it reads and decodes frames, delivers RESPONSEs to the
 * waiting callers, and runs every callback (guest events, stream data, the disconnect handler).
 * Callers never block on the socket: frames go to an outgoing queue that the caller flushes as far
 * as the socket takes without blocking and the I/O thread finishes, so agent_cancel and agent_close
 * stay prompt even when the guest does not read (a paused VM). A write or read error, EOF, or a
 * frame that violates the protocol kills the connection: every pending call on every handle fails
 * with -ECONNRESET, and so does every later one. Reconnecting means a new agent_conn_t.
 *
 * Handles are independent: each has its own event handler (events go to every open handle that has
 * one, cancelled or not) and its own streams; agent_cancel/agent_close of one wake only its own
 * calls with -ESHUTDOWN. Calling into the connection from its own callbacks is allowed, except for
 * blocking: agent_call from a callback fails with -EDEADLK and stream writes do not wait there. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

typedef struct agent_conn agent_conn_t;

/* Called once, on the I/O thread, when the connection dies; error says why (-ECONNRESET for EOF,
 * -EPROTO for a protocol violation, the errno of a failed read or write). */
typedef void (*agent_conn_disconnect_cb)(agent_conn_t *conn, int error, void *userdata);

/* Receives a stream's bytes on the I/O thread. data != NULL: len bytes of DATA (valid during the
 * call). data == NULL: the stream ended, error 0 for the agent's EOF or -ECONNRESET when the
 * connection died; nothing follows an end. */
typedef void (*agent_stream_cb)(agent_t *agent, uint32_t stream_id, const void *data, size_t len, int error,
                                void *userdata);

/* Connects to the Unix socket at socket_path, retrying while it does not exist or refuses (QEMU
 * creates it at start, the guest agent comes up later), then performs the handshake as
 * agent_conn_new. timeout_ms bounds the whole. -ETIMEDOUT when the socket never appeared or the
 * agent never answered, -ECONNREFUSED when it still refused at the deadline, -EPROTO on a version
 * mismatch, -ECONNRESET when the peer hung up. */
int agent_conn_connect(const char *socket_path, int timeout_ms, agent_conn_t **ret);

/* Takes ownership of a connected stream socket (closed on failure too) and performs the handshake:
 * sends HELLO every 200 ms until the agent answers with its own HELLO (a guest that is still booting
 * may drop or queue them; the agent resets on each, and nothing else is sent before the answer).
 * Whatever precedes the agent's HELLO (frames or a frame's tail meant for an earlier connection) is
 * skipped, and so is a HELLO that is not JSON. Errors as agent_conn_connect. */
int agent_conn_new(int fd, int timeout_ms, agent_conn_t **ret);

/* Drops the caller's reference and clears the disconnect handler (waiting for a running call of it
 * unless called from it). The connection is freed once every handle is closed as well; accepts
 * NULL. */
void agent_conn_unref(agent_conn_t *c);

/* Opens a new handle on the connection, which it keeps alive until agent_close; -ECONNRESET when
 * the connection is dead. */
int agent_conn_open(agent_conn_t *c, agent_t **ret);

/* False once the connection died. */
bool agent_conn_is_alive(agent_conn_t *c);

/* Sets the handler called when the connection dies (not called when it is dead already: set it,
 * then check agent_conn_is_alive). */
void agent_conn_set_disconnect_handler(agent_conn_t *c, agent_conn_disconnect_cb cb, void *userdata);

/* Registers on_data as the consumer of stream_id (from the Streams of a CreateContainer or
 * ExecProcess result) on this handle. CREDIT and EOF the agent sent before the stream was opened
 * are kept (a bounded number of unopened streams); such an early EOF is delivered on the I/O
 * thread after this returns. The host grants no credit by itself: see agent_stream_credit.
 * -EEXIST when some handle has it open, -EINVAL for stream 0, -EOPNOTSUPP for a handle of another
 * transport, -ESHUTDOWN after cancel, -ECONNRESET on a dead connection. */
int agent_stream_open(agent_t *a, uint32_t stream_id, agent_stream_cb on_data, void *userdata);

/* Lets the agent send bytes more DATA on the stream (sends a CREDIT frame); call as the consumer
 * drains what on_data delivered. -EOVERFLOW when the outstanding credit would pass 2^32-1, -EBADF
 * when this handle has not opened the stream. */
int agent_stream_credit(agent_t *a, uint32_t stream_id, uint32_t bytes);

/* Sends up to len bytes as DATA, as far as the agent's credit allows, and returns how many were
 * accepted (> 0; the rest is for the next call). Without credit it waits up to timeout_ms for
 * some (0: not at all; negative: no limit; never from a callback) and returns -EAGAIN when none
 * came. -EPIPE after agent_stream_eof, -EBADF when the stream is not (or no longer) open on this
 * handle, -ESHUTDOWN after cancel, -ECONNRESET on a dead connection. len 0 returns 0. */
int agent_stream_write(agent_t *a, uint32_t stream_id, const void *data, size_t len, int timeout_ms);

/* Tells the agent no more DATA follows (for Stdin: closes the process's stdin); idempotent. */
int agent_stream_eof(agent_t *a, uint32_t stream_id);

/* Unregisters the stream: no callback for it runs after this returns (unless called from a
 * callback, which then is the last). Sends nothing; DATA that arrives later is dropped. */
void agent_stream_close(agent_t *a, uint32_t stream_id);
