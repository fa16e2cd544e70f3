/* WebSocket (RFC 6455) framing and handshake helpers, shared by katad and katactl. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
        WS_OP_CONTINUATION = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xA,
};

enum {
        WS_CLOSE_NORMAL = 1000,
        WS_CLOSE_GOING_AWAY = 1001,
        WS_CLOSE_PROTOCOL_ERROR = 1002,
        WS_CLOSE_TOO_BIG = 1009,
};

typedef struct ws_frame {
        bool fin;
        uint8_t opcode;
        bool masked;
        uint64_t length;
        const uint8_t *payload; /* points into the parsed buffer; unmasked in place */
} ws_frame_t;

/* Computes Sec-WebSocket-Accept for a client's Sec-WebSocket-Key into out (at least 29 bytes).
 * -EINVAL when the key is not 16 bytes in base64. */
int ws_accept_key(const char *client_key, char *out, size_t size);

/* Parses one frame at the start of buf (len bytes). Returns the number of bytes the frame takes
 * when complete (unmasking its payload in place), 0 when more bytes are needed, -EPROTO for a
 * malformed frame (reserved bits, bad control frame, wrong masking), -EMSGSIZE when the payload
 * exceeds max_payload. require_mask: frames from a client must be masked, from a server must not. */
int ws_frame_parse(uint8_t *buf, size_t len, bool require_mask, uint64_t max_payload, ws_frame_t *ret);

/* Writes a frame header for a payload of len bytes into hdr (at least 14 bytes) and returns its
 * size. With mask set, the masking key is written and the payload must be masked by the caller
 * with ws_mask. */
size_t ws_frame_header(uint8_t *hdr, bool fin, uint8_t opcode, uint64_t len, const uint8_t *mask);
/* XORs data with the 4-byte masking key, starting at payload offset offset. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);
