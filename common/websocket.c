/* WebSocket (RFC 6455) framing and handshake helpers. */
#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "websocket.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int ws_accept_key(const char *client_key, char *out, size_t size) {
        /* 16 bytes in base64: 22 characters then "==" (EVP_DecodeBlock counts padding as data). */
        if (!client_key || strlen(client_key) != 24 || size < 29 || client_key[22] != '=' || client_key[23] != '=')
                return -EINVAL;
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 22; i++)
                if (!client_key[i] || !strchr(alphabet, client_key[i]))
                        return -EINVAL;
        unsigned char decoded[20];
        if (EVP_DecodeBlock(decoded, (const unsigned char *) client_key, 24) != 18)
                return -EINVAL;
        char buf[24 + sizeof WS_GUID];
        memcpy(buf, client_key, 24);
        memcpy(buf + 24, WS_GUID, sizeof WS_GUID);
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        if (!EVP_Digest(buf, strlen(buf), digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
                return -EIO;
        EVP_EncodeBlock((unsigned char *) out, digest, 20);
        return 0;
}

int ws_frame_parse(uint8_t *buf, size_t len, bool require_mask, uint64_t max_payload, ws_frame_t *ret) {
        if (len < 2)
                return 0;
        bool fin = buf[0] & 0x80;
        uint8_t opcode = buf[0] & 0x0f;
        if (buf[0] & 0x70)
                return -EPROTO; /* no extension was negotiated */
        if ((opcode > WS_OP_BINARY && opcode < WS_OP_CLOSE) || opcode > WS_OP_PONG)
                return -EPROTO;
        bool masked = buf[1] & 0x80;
        if (masked != require_mask)
                return -EPROTO;
        uint64_t plen = buf[1] & 0x7f;
        size_t off = 2;
        if (opcode >= WS_OP_CLOSE && (!fin || plen > 125))
                return -EPROTO; /* control frames are short and never fragmented */
        if (plen == 126) {
                if (len < 4)
                        return 0;
                plen = (uint64_t) buf[2] << 8 | buf[3];
                if (plen < 126)
                        return -EPROTO;
                off = 4;
        } else if (plen == 127) {
                if (len < 10)
                        return 0;
                plen = 0;
                for (int i = 0; i < 8; i++)
                        plen = plen << 8 | buf[2 + i];
                if (plen >> 63 || plen < 65536)
                        return -EPROTO;
                off = 10;
        }
        if (plen > max_payload)
                return -EMSGSIZE;
        uint8_t mask[4] = { 0 };
        if (masked) {
                if (len < off + 4)
                        return 0;
                memcpy(mask, buf + off, 4);
                off += 4;
        }
        if (len - off < plen)
                return 0;
        if (masked)
                ws_mask(buf + off, (size_t) plen, mask, 0);
        *ret = (ws_frame_t) { .fin = fin, .opcode = opcode, .masked = masked, .length = plen, .payload = buf + off };
        return (int) (off + plen);
}

size_t ws_frame_header(uint8_t *hdr, bool fin, uint8_t opcode, uint64_t len, const uint8_t *mask) {
        size_t off = 2;
        hdr[0] = (uint8_t) ((fin ? 0x80 : 0) | (opcode & 0x0f));
        uint8_t m = mask ? 0x80 : 0;
        if (len < 126)
                hdr[1] = (uint8_t) (m | len);
        else if (len <= 0xffff) {
                hdr[1] = m | 126;
                hdr[2] = (uint8_t) (len >> 8);
                hdr[3] = (uint8_t) len;
                off = 4;
        } else {
                hdr[1] = m | 127;
                for (int i = 0; i < 8; i++)
                        hdr[2 + i] = (uint8_t) (len >> (56 - 8 * i));
                off = 10;
        }
        if (mask) {
                memcpy(hdr + off, mask, 4);
                off += 4;
        }
        return off;
}

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset) {
        for (size_t i = 0; i < len; i++)
                data[i] ^= mask[(offset + i) & 3];
}
