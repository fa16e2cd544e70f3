/* The wire format between katad and its guest agent (see protocol.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static void put32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

void agent_frame_header_encode(const agent_frame_header_t *h, uint8_t out[AGENT_FRAME_HEADER_SIZE]) {
        put32(out, h->length);
        put32(out + 4, h->stream);
        out[8] = h->type;
        out[9] = 0;
        out[10] = out[11] = 0;
        put32(out + 12, h->id);
}

static bool is_stream_type(uint8_t type) {
        return type == AGENT_FRAME_DATA || type == AGENT_FRAME_EOF || type == AGENT_FRAME_CREDIT;
}

int agent_frame_header_decode(const uint8_t in[AGENT_FRAME_HEADER_SIZE], agent_frame_header_t *ret) {
        agent_frame_header_t h = {
                .length = get32(in),
                .stream = get32(in + 4),
                .type = in[8],
                .id = get32(in + 12),
        };
        if (h.type < AGENT_FRAME_HELLO || h.type >= _AGENT_FRAME_TYPE_MAX || in[9] || in[10] || in[11])
                return -EPROTO;
        if (is_stream_type(h.type) != (h.stream != 0))
                return -EPROTO;
        if (h.type == AGENT_FRAME_CREDIT && h.length != 4)
                return -EPROTO;
        if (h.length > AGENT_FRAME_MAX_PAYLOAD)
                return -EMSGSIZE;
        *ret = h;
        return 0;
}

int agent_frame_reader_feed(agent_frame_reader_t *r, const void *data, size_t len) {
        if (r->consumed > 0) {
                memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
                r->len -= r->consumed;
                r->consumed = 0;
        }
        if (r->len + len > r->cap) {
                size_t cap = r->cap ? r->cap : 65536;
                while (cap < r->len + len)
                        cap *= 2;
                uint8_t *b = realloc(r->buf, cap);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->cap = cap;
        }
        memcpy(r->buf + r->len, data, len);
        r->len += len;
        return 0;
}

int agent_frame_reader_next(agent_frame_reader_t *r, agent_frame_header_t *ret_header, const uint8_t **ret_payload) {
        size_t avail = r->len - r->consumed;
        if (avail < AGENT_FRAME_HEADER_SIZE)
                return 0;
        agent_frame_header_t h;
        int k = agent_frame_header_decode(r->buf + r->consumed, &h);
        if (k < 0)
                return k;
        if (avail - AGENT_FRAME_HEADER_SIZE < h.length)
                return 0;
        *ret_header = h;
        *ret_payload = r->buf + r->consumed + AGENT_FRAME_HEADER_SIZE;
        r->consumed += AGENT_FRAME_HEADER_SIZE + h.length;
        return 1;
}

void agent_frame_reader_reset(agent_frame_reader_t *r) {
        r->len = r->consumed = 0;
}

void agent_frame_reader_free(agent_frame_reader_t *r) {
        free(r->buf);
        *r = (agent_frame_reader_t) { 0 };
}

uint8_t *agent_frame_build(agent_frame_type_t type, uint32_t stream, uint32_t id, const void *payload, size_t len,
                           size_t *ret_size) {
        if (len > AGENT_FRAME_MAX_PAYLOAD)
                return NULL;
        uint8_t *buf = malloc(AGENT_FRAME_HEADER_SIZE + len);
        if (!buf)
                return NULL;
        agent_frame_header_t h = { .length = (uint32_t) len, .stream = stream, .type = (uint8_t) type, .id = id };
        agent_frame_header_encode(&h, buf);
        if (len)
                memcpy(buf + AGENT_FRAME_HEADER_SIZE, payload, len);
        *ret_size = AGENT_FRAME_HEADER_SIZE + len;
        return buf;
}
