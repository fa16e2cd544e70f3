/* The event stream: GET /v1/events as newline-delimited JSON, or as WebSocket text frames. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "handlers.h"
#include "json-util.h"
#include "log.h"
#include "util.h"
#include "websocket.h"

#define POLL_MS 250
#define WS_MAX_CLIENT_PAYLOAD 4096

typedef struct stream {
        katad_t *k;
        event_sub_t *sub;
        int fd; /* the connection, to notice a client that went away */
        char *pending;
        size_t pending_len, pending_off;
        struct MHD_UpgradeResponseHandle *urh;
} stream_t;

static void stream_begin(katad_t *k) {
        pthread_mutex_lock(&k->streams_lock);
        k->streams++;
        pthread_mutex_unlock(&k->streams_lock);
}

static void stream_free(stream_t *st) {
        katad_t *k = st->k;
        event_sub_free(st->sub);
        free(st->pending);
        free(st);
        pthread_mutex_lock(&k->streams_lock);
        k->streams--;
        pthread_cond_broadcast(&k->streams_cond);
        pthread_mutex_unlock(&k->streams_lock);
}

static bool peer_gone(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLRDHUP };
        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static char *event_line(json_t *ev, size_t *ret_len) {
        char *text = json_dumps(ev, JSON_COMPACT);
        if (!text)
                return NULL;
        size_t n = strlen(text);
        char *line = realloc(text, n + 2);
        if (!line) {
                free(text);
                return NULL;
        }
        line[n] = '\n';
        line[n + 1] = 0;
        *ret_len = n + 1;
        return line;
}

/* ---- NDJSON ---- */

static ssize_t ndjson_read(void *cls, uint64_t pos, char *buf, size_t max) {
        stream_t *st = cls;
        for (;;) {
                if (st->pending_off < st->pending_len) {
                        size_t n = st->pending_len - st->pending_off;
                        if (n > max)
                                n = max;
                        memcpy(buf, st->pending + st->pending_off, n);
                        st->pending_off += n;
                        return (ssize_t) n;
                }
                json_t *ev = NULL;
                int r = event_sub_next(st->sub, POLL_MS, &ev);
                if (r < 0)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                if (r == 0) {
                        if (peer_gone(st->fd))
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                        continue;
                }
                free(st->pending);
                st->pending = event_line(ev, &st->pending_len);
                st->pending_off = 0;
                json_decref(ev);
                if (!st->pending)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
        }
}

static void ndjson_free(void *cls) {
        stream_free(cls);
}

/* ---- WebSocket ---- */

static int send_all(int fd, const void *data, size_t len) {
        const char *p = data;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                                if (poll(&pfd, 1, 5000) <= 0)
                                        return -ETIMEDOUT;
                                continue;
                        }
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

static int ws_send(int fd, uint8_t opcode, const void *payload, size_t len) {
        uint8_t hdr[14];
        size_t h = ws_frame_header(hdr, true, opcode, len, NULL);
        int r = send_all(fd, hdr, h);
        return r < 0 ? r : send_all(fd, payload, len);
}

static int ws_send_close(int fd, uint16_t code) {
        uint8_t payload[2] = { (uint8_t) (code >> 8), (uint8_t) code };
        return ws_send(fd, WS_OP_CLOSE, payload, sizeof payload);
}

/* Reads what the client sent; returns <0 when the session must end. */
static int ws_handle_input(int fd, uint8_t *buf, size_t *len, size_t cap) {
        ssize_t n = recv(fd, buf + *len, cap - *len, MSG_DONTWAIT);
        if (n == 0)
                return -ECONNRESET;
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        *len += (size_t) n;
        for (;;) {
                ws_frame_t f;
                int used = ws_frame_parse(buf, *len, true, WS_MAX_CLIENT_PAYLOAD, &f);
                if (used == 0)
                        return 0;
                if (used < 0) {
                        ws_send_close(fd, used == -EMSGSIZE ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL_ERROR);
                        return used;
                }
                if (f.opcode == WS_OP_CLOSE) {
                        ws_send_close(fd, WS_CLOSE_NORMAL);
                        return -ECONNRESET;
                }
                if (f.opcode == WS_OP_PING)
                        ws_send(fd, WS_OP_PONG, f.payload, (size_t) f.length);
                /* Anything else from the client is ignored: the event stream is one-way. */
                memmove(buf, buf + used, *len - (size_t) used);
                *len -= (size_t) used;
        }
}

static void *ws_main(void *userdata) {
        stream_t *st = userdata;
        uint8_t in[WS_MAX_CLIENT_PAYLOAD + 16];
        size_t in_len = 0;
        for (;;) {
                json_t *ev = NULL;
                int r = event_sub_next(st->sub, POLL_MS, &ev);
                if (r < 0) {
                        ws_send_close(st->fd, WS_CLOSE_GOING_AWAY);
                        break;
                }
                if (r > 0) {
                        size_t len;
                        _cleanup_free_ char *line = event_line(ev, &len);
                        json_decref(ev);
                        if (!line || ws_send(st->fd, WS_OP_TEXT, line, len - 1) < 0)
                                break;
                }
                if (ws_handle_input(st->fd, in, &in_len, sizeof in) < 0)
                        break;
        }
        MHD_upgrade_action(st->urh, MHD_UPGRADE_ACTION_CLOSE);
        stream_free(st);
        return NULL;
}

static void ws_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
        stream_t *st = cls;
        st->fd = sock;
        st->urh = urh;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, ws_main, st) != 0) {
                MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
                stream_free(st);
        }
        pthread_attr_destroy(&attr);
}

static bool header_has_token(const char *value, const char *token) {
        if (!value)
                return false;
        size_t n = strlen(token);
        for (const char *p = value; *p;) {
                p += strspn(p, " \t,");
                size_t len = strcspn(p, ",");
                size_t trimmed = len;
                while (trimmed > 0 && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
                        trimmed--;
                if (trimmed == n && strncasecmp(p, token, n) == 0)
                        return true;
                p += len;
        }
        return false;
}

HANDLER(handle_events) {
        const char *sandbox = request_query(req, "sandbox");
        const char *container = request_query(req, "container");
        const char *since = request_query(req, "since");
        if ((sandbox && !id_is_valid(sandbox)) || (container && !id_is_valid(container)))
                return respond_errorf(req, 400, "invalid_id", "sandbox and container filters must be valid ids");
        int64_t since_ns = -1;
        if (since && parse_rfc3339(since, &since_ns) < 0)
                return respond_errorf(req, 400, "invalid_query", "since must be an RFC 3339 UTC time like 2026-01-02T03:04:05Z");

        const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        stream_t *st = calloc(1, sizeof *st);
        if (!st)
                return MHD_NO;
        st->k = k;
        st->fd = info ? info->connect_fd : -1;
        stream_begin(k);
        if (event_bus_subscribe(k->events, sandbox, container, since_ns, &st->sub) < 0) {
                stream_free(st);
                return respond_errorf(req, 500, "internal", "cannot subscribe to events");
        }

        bool websocket = header_has_token(request_header(req, "Upgrade"), "websocket");
        struct MHD_Response *resp;
        unsigned status;
        if (websocket) {
                char accept[32];
                const char *version = request_header(req, "Sec-WebSocket-Version");
                if (!header_has_token(request_header(req, "Connection"), "upgrade") || !version ||
                    !streq(version, "13") || ws_accept_key(request_header(req, "Sec-WebSocket-Key"), accept, sizeof accept) < 0) {
                        stream_free(st);
                        return respond_errorf(req, 400, "bad_request",
                                              "a WebSocket upgrade needs Connection: Upgrade, Sec-WebSocket-Version: 13 and a valid Sec-WebSocket-Key");
                }
                resp = MHD_create_response_for_upgrade(ws_upgraded, st);
                if (resp) {
                        MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
                        MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
                }
                status = MHD_HTTP_SWITCHING_PROTOCOLS;
        } else {
                resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, ndjson_read, st, ndjson_free);
                if (resp)
                        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
                status = 200;
        }
        if (!resp) {
                stream_free(st);
                return MHD_NO;
        }
        enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}
