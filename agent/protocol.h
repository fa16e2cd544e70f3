/* The wire format between katad and its guest agent: frames on one byte stream (a virtio-serial
 * port, or vsock), multiplexing RPCs, events and stdio streams. Shared by both ends.
 *
 * Every frame is a 16-byte header followed by `length` payload bytes:
 *
 *   offset size field
 *        0    4 length   payload bytes, big-endian, at most AGENT_FRAME_MAX_PAYLOAD
 *        4    4 stream   0 for control frames (HELLO, REQUEST, RESPONSE, EVENT); a stdio stream id
 *        8    1 type     an agent_frame_type_t
 *        9    1 flags    0 (reserved)
 *       10    2 reserved 0
 *       12    4 id       request id for REQUEST/RESPONSE; 0 otherwise
 *
 * See docs/agent-protocol.md for the payloads and the conversation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTOCOL_VERSION 1
#define AGENT_FRAME_HEADER_SIZE 16
#define AGENT_FRAME_MAX_PAYLOAD (1u << 20)
/* The name of the virtio-serial port the agent listens on. */
#define AGENT_PORT_NAME "io.katad.agent.0"

typedef enum agent_frame_type {
        AGENT_FRAME_HELLO = 1,    /* JSON {"Version":1,"Agent":"..."}: both ends, first */
        AGENT_FRAME_REQUEST = 2,  /* JSON {"Method":"...","Params":{...}} with an id */
        AGENT_FRAME_RESPONSE = 3, /* JSON {"Result":{...}} or {"Error":{"Errno":N,"Message":"..."}} */
        AGENT_FRAME_EVENT = 4,    /* JSON, e.g. {"Type":"process-exit",...} */
        AGENT_FRAME_DATA = 5,     /* bytes of a stdio stream */
        AGENT_FRAME_EOF = 6,      /* the sender will send no more data on this stream */
        AGENT_FRAME_CREDIT = 7,   /* 4-byte big-endian count: the receiver may take that many more bytes */
        _AGENT_FRAME_TYPE_MAX,
} agent_frame_type_t;

typedef struct agent_frame_header {
        uint32_t length;
        uint32_t stream;
        uint8_t type;
        uint32_t id;
} agent_frame_header_t;

/* Writes the 16-byte header. */
void agent_frame_header_encode(const agent_frame_header_t *h, uint8_t out[AGENT_FRAME_HEADER_SIZE]);
/* Reads a header; -EPROTO for an unknown type, nonzero reserved bytes, a control frame on a stream
 * or a stream frame on stream 0; -EMSGSIZE for a payload over the maximum. */
int agent_frame_header_decode(const uint8_t in[AGENT_FRAME_HEADER_SIZE], agent_frame_header_t *ret);

/* Incremental decoding of a byte stream into frames. */
typedef struct agent_frame_reader {
        uint8_t *buf;
        size_t len, cap, consumed;
} agent_frame_reader_t;

/* Appends received bytes. */
int agent_frame_reader_feed(agent_frame_reader_t *r, const void *data, size_t len);
/* Returns 1 with the next complete frame (payload valid until the next call), 0 when more bytes
 * are needed, or a negative errno from agent_frame_header_decode (the stream is then unusable). */
int agent_frame_reader_next(agent_frame_reader_t *r, agent_frame_header_t *ret_header, const uint8_t **ret_payload);
/* Drops buffered bytes (after the peer reconnected). */
void agent_frame_reader_reset(agent_frame_reader_t *r);
void agent_frame_reader_free(agent_frame_reader_t *r);

/* Builds a whole frame (header + payload) in a new buffer; NULL on allocation failure. */
uint8_t *agent_frame_build(agent_frame_type_t type, uint32_t stream, uint32_t id, const void *payload, size_t len,
                           size_t *ret_size);
