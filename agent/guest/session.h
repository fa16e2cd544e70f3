/* The agent's side of one host conversation (docs/agent-protocol.md "Wire format"): frame
 * decoding, the HELLO exchange, requests, events and stdio frames. It does no I/O itself: bytes
 * come in through session_receive and frames go out through the transport, so the same code runs
 * on a virtio-serial port, on a Unix socket in test mode, and in the fuzzer.
 *
 * A virtio-serial port has no connections: a host that goes away shows only as a hang-up, and a
 * new host starts with HELLO. The session therefore treats each host HELLO as a new connection
 * (partial frames dropped, credits void, answers to older requests discarded) and, after a
 * protocol error on a transport that cannot be closed, skips bytes until a HELLO header. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/protocol.h"
#include "rpc.h"

typedef struct session_transport {
        /* Queues a whole frame for sending; takes ownership of frame (malloc'ed). */
        int (*send)(void *ud, uint8_t *frame, size_t size);
        /* Stdio (DATA) bytes queued and not yet written; control frames go ahead of them. */
        size_t (*queued)(void *ud);
        /* Drops queued output (a new host must not see answers meant for the previous one). */
        void (*discard_output)(void *ud);
        /* Ends the connection after a protocol error; NULL when the transport cannot (a port). */
        void (*close)(void *ud);
} session_transport_t;

/* Above this many queued bytes the transport counts as congested: stdio output waits. */
#define SESSION_CONGESTED_BYTES (1u << 20)

int session_new(const guest_ops_t *ops, void *ops_userdata, session_t **ret);
void session_free(session_t *s);
void session_set_transport(session_t *s, const session_transport_t *transport, void *userdata);

/* Feeds received bytes; frames are handled before it returns. */
void session_receive(session_t *s, const void *data, size_t len);
/* The host went away (socket closed, or the port hung up): forget the connection. */
void session_disconnected(session_t *s);
/* The transport drained below the congestion mark. */
void session_writable(session_t *s);

/* True between the host's HELLO and the end of that connection. */
bool session_is_connected(const session_t *s);
/* Counts connections; answers carry the number of the connection that asked. */
uint64_t session_generation(const session_t *s);
/* How many more stdio bytes may be queued now (0 when congested or not connected). */
size_t session_send_budget(const session_t *s);

/* Sends an EVENT (borrowed) if a host is connected. */
int session_send_event(session_t *s, json_t *event);
int session_send_data(session_t *s, uint32_t stream, const void *data, size_t len);
int session_send_eof(session_t *s, uint32_t stream);
int session_send_credit(session_t *s, uint32_t stream, uint32_t bytes);
/* Sends a RESPONSE for request id of the given connection; dropped if that connection is gone. */
int session_send_response(session_t *s, uint64_t generation, uint32_t id, json_t *payload);

/* The Agent string of HELLO and Ping. */
#define AGENT_NAME "katad-agent"
#ifdef PACKAGE_VERSION
#define AGENT_VERSION_STRING AGENT_NAME " " PACKAGE_VERSION
#else
#define AGENT_VERSION_STRING AGENT_NAME " 0.1.0"
#endif
