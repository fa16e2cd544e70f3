/* libFuzzer target for WebSocket input: ws_frame_parse consuming frame after frame (as a server
 * and as a client, with a small and an unlimited payload cap), and ws_accept_key on the input as
 * a string. Must never crash, leak or trip a sanitizer. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_all(const uint8_t *data, size_t size, bool require_mask, uint64_t max_payload) {
        /* Exact size: the parser unmasks in place, and ASan must see any access past the end. */
        uint8_t *buf = malloc(size ? size : 1);
        if (!buf)
                return;
        memcpy(buf, data, size);
        size_t off = 0;
        while (off < size) {
                ws_frame_t f;
                int r = ws_frame_parse(buf + off, size - off, require_mask, max_payload, &f);
                if (r == 0 || r == -EPROTO || r == -EMSGSIZE)
                        break;
                if (r < 0 || (size_t) r > size - off)
                        abort();
                /* The frame must lie within what was consumed and obey what was asked. */
                if (f.payload < buf + off || f.length > max_payload || f.masked != require_mask ||
                    (size_t) (f.payload - (buf + off)) + f.length != (size_t) r)
                        abort();
                if (f.opcode >= WS_OP_CLOSE && (!f.fin || f.length > 125))
                        abort();
                /* Only minimal encodings are accepted, so re-encoding gives the same header size. */
                uint8_t hdr[14];
                const uint8_t key[4] = {1, 2, 3, 4};
                if (ws_frame_header(hdr, f.fin, f.opcode, f.length, f.masked ? key : NULL) !=
                    (size_t) (f.payload - (buf + off)))
                        abort();
                off += (size_t) r;
        }
        free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        parse_all(data, size, false, 125);
        parse_all(data, size, false, UINT64_MAX);
        parse_all(data, size, true, 125);
        parse_all(data, size, true, UINT64_MAX);

        char *key = malloc(size + 1);
        if (!key)
                return 0;
        memcpy(key, data, size);
        key[size] = 0;
        char *out = malloc(29); /* exactly the documented minimum */
        if (out) {
                int r = ws_accept_key(key, out, 29);
                if (r == 0 && (strlen(out) != 28 || out[27] != '='))
                        abort();
                if (r != 0 && r != -EINVAL)
                        abort();
                free(out);
        }
        free(key);
        return 0;
}
