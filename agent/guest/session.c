/* The agent's side of a host conversation (see session.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "session.h"

typedef enum session_state {
        SESSION_AWAIT_HELLO, /* every frame but HELLO is a protocol error */
        SESSION_CONNECTED,
        SESSION_RESYNC, /* after a protocol error on a port: skipping bytes up to a HELLO header */
} session_state_t;

/* While resynchronising, a header counts as a HELLO only with a payload this size or smaller. */
#define HELLO_MAX_PAYLOAD 4096

struct session {
        const guest_ops_t *ops;
        void *ops_userdata;
        const session_transport_t *transport;
        void *transport_userdata;
        agent_frame_reader_t reader;
        session_state_t state;
        uint64_t generation;
        /* The last bytes seen while resynchronising: a HELLO header may straddle two reads. */
        uint8_t tail[AGENT_FRAME_HEADER_SIZE];
        size_t tail_len;
        bool stop;             /* the current receive must not look at more frames */
        uint8_t *resync_input; /* undecoded bytes left by a protocol error, to scan for a HELLO */
        size_t resync_len;
};

int session_new(const guest_ops_t *ops, void *ops_userdata, session_t **ret) {
        session_t *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->ops = ops;
        s->ops_userdata = ops_userdata;
        s->state = SESSION_AWAIT_HELLO;
        s->generation = 1;
        *ret = s;
        return 0;
}

void session_free(session_t *s) {
        if (!s)
                return;
        agent_frame_reader_free(&s->reader);
        free(s->resync_input);
        free(s);
}

void session_set_transport(session_t *s, const session_transport_t *transport, void *userdata) {
        s->transport = transport;
        s->transport_userdata = userdata;
}

bool session_is_connected(const session_t *s) {
        return s->state == SESSION_CONNECTED;
}

uint64_t session_generation(const session_t *s) {
        return s->generation;
}

size_t session_send_budget(const session_t *s) {
        if (s->state != SESSION_CONNECTED || !s->transport)
                return 0;
        size_t queued = s->transport->queued(s->transport_userdata);
        return queued >= SESSION_CONGESTED_BYTES ? 0 : SESSION_CONGESTED_BYTES - queued;
}

static int send_frame(session_t *s, agent_frame_type_t type, uint32_t stream, uint32_t id, const void *payload,
                      size_t len) {
        if (!s->transport)
                return -ENOTCONN;
        size_t size;
        uint8_t *frame = agent_frame_build(type, stream, id, payload, len, &size);
        if (!frame)
                return len > AGENT_FRAME_MAX_PAYLOAD ? -EMSGSIZE : -ENOMEM;
        return s->transport->send(s->transport_userdata, frame, size);
}

static int send_json(session_t *s, agent_frame_type_t type, uint32_t id, json_t *payload) {
        _cleanup_free_ char *text = json_dumps(payload, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        size_t len = strlen(text);
        if (len > AGENT_FRAME_MAX_PAYLOAD && type == AGENT_FRAME_RESPONSE) {
                /* An answer that does not fit a frame becomes an error, so the caller still hears back. */
                log_error("Response %u is %zu bytes, over the frame limit", id, len);
                _cleanup_json_ json_t *err = json_pack("{s:{s:i, s:s}}", "Error", "Errno", EMSGSIZE, "Message",
                                                       "the result does not fit in one frame");
                return err ? send_json(s, type, id, err) : -ENOMEM;
        }
        return send_frame(s, type, 0, id, text, len);
}

int session_send_event(session_t *s, json_t *event) {
        if (s->state != SESSION_CONNECTED)
                return 0;
        return send_json(s, AGENT_FRAME_EVENT, 0, event);
}

int session_send_data(session_t *s, uint32_t stream, const void *data, size_t len) {
        if (s->state != SESSION_CONNECTED)
                return -ENOTCONN;
        return send_frame(s, AGENT_FRAME_DATA, stream, 0, data, len);
}

int session_send_eof(session_t *s, uint32_t stream) {
        if (s->state != SESSION_CONNECTED)
                return -ENOTCONN;
        return send_frame(s, AGENT_FRAME_EOF, stream, 0, NULL, 0);
}

int session_send_credit(session_t *s, uint32_t stream, uint32_t bytes) {
        if (s->state != SESSION_CONNECTED)
                return -ENOTCONN;
        uint8_t be[4] = { (uint8_t) (bytes >> 24), (uint8_t) (bytes >> 16), (uint8_t) (bytes >> 8), (uint8_t) bytes };
        return send_frame(s, AGENT_FRAME_CREDIT, stream, 0, be, sizeof be);
}

int session_send_response(session_t *s, uint64_t generation, uint32_t id, json_t *payload) {
        if (s->state != SESSION_CONNECTED || generation != s->generation)
                return 0; /* asked on a connection that is gone */
        return send_json(s, AGENT_FRAME_RESPONSE, id, payload);
}

/* Forgets the current connection: partial input, queued output, credits, pending answers. */
static void session_reset(session_t *s, session_state_t state) {
        bool was_connected = s->state == SESSION_CONNECTED;
        agent_frame_reader_reset(&s->reader);
        s->state = state;
        s->generation++;
        s->tail_len = 0;
        if (s->transport)
                s->transport->discard_output(s->transport_userdata);
        if (was_connected)
                s->ops->connection_reset(s->ops_userdata);
}

void session_disconnected(session_t *s) {
        if (s->state == SESSION_AWAIT_HELLO && s->reader.len == s->reader.consumed)
                return;
        log_debug("Host disconnected");
        session_reset(s, SESSION_AWAIT_HELLO);
        s->stop = true;
}

void session_writable(session_t *s) {
        if (s->state == SESSION_CONNECTED)
                s->ops->output_ready(s->ops_userdata);
}

static bool is_hello_header(const uint8_t *p) {
        uint32_t length = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
        static const uint8_t rest[12] = { 0, 0, 0, 0, AGENT_FRAME_HELLO, 0, 0, 0, 0, 0, 0, 0 };
        return length > 0 && length <= HELLO_MAX_PAYLOAD && memcmp(p + 4, rest, sizeof rest) == 0;
}

/* Scans tail + data for a HELLO header; when found, the bytes from there on go to the decoder and
 * the session waits for that HELLO. Returns true when found. */
static bool session_resync(session_t *s, const uint8_t *data, size_t len) {
        size_t n = s->tail_len + len;
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return false;
        memcpy(buf, s->tail, s->tail_len);
        memcpy(buf + s->tail_len, data, len);
        for (size_t i = 0; i + AGENT_FRAME_HEADER_SIZE <= n; i++)
                if (is_hello_header(buf + i) &&
                    (i + AGENT_FRAME_HEADER_SIZE == n || buf[i + AGENT_FRAME_HEADER_SIZE] == '{')) {
                        log_debug("Found a HELLO header after a protocol error; resuming");
                        s->state = SESSION_AWAIT_HELLO;
                        s->tail_len = 0;
                        return agent_frame_reader_feed(&s->reader, buf + i, n - i) >= 0;
                }
        size_t keep = n < AGENT_FRAME_HEADER_SIZE - 1 ? n : AGENT_FRAME_HEADER_SIZE - 1;
        memcpy(s->tail, buf + n - keep, keep);
        s->tail_len = keep;
        return false;
}

/* The host broke the protocol: close a connection, or skip to the next HELLO on a port. skip is
 * how many of the decoder's unconsumed bytes belong to the offending frame (1 for a bad header:
 * a HELLO may start at the very next byte). */
static void protocol_error(session_t *s, const char *why, size_t skip) {
        log_warning("Protocol error from the host: %s; dropping the connection", why);
        s->stop = true;
        if (s->transport && s->transport->close) {
                session_reset(s, SESSION_AWAIT_HELLO);
                s->transport->close(s->transport_userdata);
                return;
        }
        size_t unconsumed = s->reader.len - s->reader.consumed;
        size_t rest = unconsumed > skip ? unconsumed - skip : 0;
        free(s->resync_input);
        s->resync_input = rest ? malloc(rest) : NULL;
        s->resync_len = s->resync_input ? rest : 0;
        if (s->resync_input)
                memcpy(s->resync_input, s->reader.buf + s->reader.consumed + skip, rest);
        session_reset(s, SESSION_RESYNC);
}

static void handle_hello(session_t *s, const uint8_t *payload, size_t len) {
        _cleanup_json_ json_t *hello = json_loadb((const char *) payload, len, 0, NULL);
        json_t *version = json_object_get(hello, "Version");
        if (!json_is_object(hello) || !json_is_integer(version)) {
                protocol_error(s, "HELLO is not {\"Version\":N,...}", 0);
                return;
        }
        /* Every HELLO starts a new connection: answers and credits of an earlier one are void. */
        if (s->state == SESSION_CONNECTED)
                session_reset(s, SESSION_AWAIT_HELLO);
        else {
                s->generation++;
                if (s->transport)
                        s->transport->discard_output(s->transport_userdata);
        }
        s->state = SESSION_CONNECTED;
        _cleanup_json_ json_t *reply =
                json_pack("{s:i, s:s}", "Version", AGENT_PROTOCOL_VERSION, "Agent", AGENT_VERSION_STRING);
        if (reply)
                send_json(s, AGENT_FRAME_HELLO, 0, reply);
        if (json_integer_value(version) != AGENT_PROTOCOL_VERSION) {
                log_warning("Host speaks protocol version %lld, not %d", (long long) json_integer_value(version),
                            AGENT_PROTOCOL_VERSION);
                /* The host ends the conversation; until a new HELLO, any other frame is an error. */
                s->state = SESSION_AWAIT_HELLO;
                return;
        }
        log_debug("Host connected: %s", json_get_string(hello, "Agent") ?: "(unnamed)");
        s->ops->connected(s->ops_userdata);
}

static void handle_frame(session_t *s, const agent_frame_header_t *h, const uint8_t *payload) {
        if (h->type == AGENT_FRAME_HELLO) {
                handle_hello(s, payload, h->length);
                return;
        }
        if (s->state != SESSION_CONNECTED) {
                protocol_error(s, "a frame before HELLO", 0);
                return;
        }
        switch (h->type) {
        case AGENT_FRAME_REQUEST:
                rpc_dispatch(s, s->ops, s->ops_userdata, h->id, payload, h->length);
                break;
        case AGENT_FRAME_DATA:
                if (s->ops->stream_data(s->ops_userdata, h->stream, payload, h->length) < 0)
                        protocol_error(s, "DATA beyond the granted credit", 0);
                break;
        case AGENT_FRAME_EOF:
                s->ops->stream_eof(s->ops_userdata, h->stream);
                break;
        case AGENT_FRAME_CREDIT:
                s->ops->stream_credit(s->ops_userdata, h->stream,
                                      (uint32_t) payload[0] << 24 | (uint32_t) payload[1] << 16 |
                                              (uint32_t) payload[2] << 8 | payload[3]);
                break;
        default:
                protocol_error(s, "a frame type only the agent sends", 0);
                break;
        }
}

static void session_process(session_t *s) {
        while (!s->stop) {
                agent_frame_header_t h;
                const uint8_t *payload;
                int r = agent_frame_reader_next(&s->reader, &h, &payload);
                if (r == 0)
                        break;
                if (r < 0) {
                        protocol_error(s, r == -EMSGSIZE ? "a frame over 1 MiB" : "a malformed frame header", 1);
                        break;
                }
                handle_frame(s, &h, payload);
        }
}

void session_receive(session_t *s, const void *data, size_t len) {
        /* Iterative, so that a stream of bad frames cannot nest protocol errors on the stack. */
        _cleanup_free_ uint8_t *owned = NULL;
        for (;;) {
                s->stop = false;
                if (s->state == SESSION_RESYNC) {
                        if (!session_resync(s, data, len))
                                return;
                } else if (len > 0 && agent_frame_reader_feed(&s->reader, data, len) < 0) {
                        log_error("Out of memory buffering host input");
                        session_reset(s, SESSION_AWAIT_HELLO);
                        return;
                }
                session_process(s);
                if (s->state != SESSION_RESYNC || !s->resync_input)
                        return;
                free(owned);
                owned = TAKE_PTR(s->resync_input);
                data = owned;
                len = s->resync_len;
                s->resync_len = 0;
        }
}
