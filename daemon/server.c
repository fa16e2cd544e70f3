/* The HTTP side of katad: libmicrohttpd glue, body collection, peer credentials, responses. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/schema.h"
#include "handlers.h"
#include "json-util.h"
#include "log.h"
#include "router.h"
#include "server.h"
#include "util.h"

struct server {
        katad_t *k;
        struct MHD_Daemon *mhd;
        int listen_fd;
};

/* ---- responses ---- */

static enum MHD_Result queue_with_header(request_t *req, unsigned status, const char *data, size_t len,
                                         const char *type, const char *header, const char *value) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *) data, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        if (type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (header)
                MHD_add_response_header(resp, header, value);
        enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result queue(request_t *req, unsigned status, const char *data, size_t len, const char *type) {
        return queue_with_header(req, status, data, len, type, NULL, NULL);
}

static enum MHD_Result respond_json_header(request_t *req, unsigned status, json_t *body, const char *header,
                                           const char *value) {
        _cleanup_json_ json_t *owned = body;
        _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!text) {
                static const char oom[] = "{\"code\":\"internal\",\"message\":\"out of memory\",\"status\":500}\n";
                return queue(req, 500, oom, sizeof oom - 1, "application/json");
        }
        size_t n = strlen(text);
        char *line = realloc(TAKE_PTR(text), n + 2);
        if (!line)
                return MHD_NO;
        line[n] = '\n';
        line[n + 1] = 0;
        enum MHD_Result r = queue_with_header(req, status, line, n + 1, "application/json", header, value);
        free(line);
        return r;
}

enum MHD_Result respond_json(request_t *req, unsigned status, json_t *body) {
        return respond_json_header(req, status, body, NULL, NULL);
}

enum MHD_Result respond_error_header(request_t *req, const kd_error_t *e, const char *header, const char *value) {
        unsigned status = e->status >= 400 ? (unsigned) e->status : 500;
        log_debug("%s %s -> %u %s: %s", req->method, req->url, status, e->code, e->message);
        return respond_json_header(req, status,
                                   json_pack("{s:s, s:s, s:i}", "code", e->code[0] ? e->code : "internal", "message",
                                             e->message, "status", (int) status),
                                   header, value);
}

enum MHD_Result respond_error(request_t *req, const kd_error_t *e) {
        return respond_error_header(req, e, NULL, NULL);
}

enum MHD_Result respond_errorf(request_t *req, unsigned status, const char *code, const char *fmt, ...) {
        kd_error_t e = { .status = (int) status };
        snprintf(e.code, sizeof e.code, "%s", code);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.message, sizeof e.message, fmt, ap);
        va_end(ap);
        return respond_error(req, &e);
}

enum MHD_Result respond_empty(request_t *req, unsigned status) {
        return queue(req, status, "", 0, NULL);
}

enum MHD_Result respond_text(request_t *req, unsigned status, const char *text) {
        return queue(req, status, text, strlen(text), "text/plain; charset=utf-8");
}

enum MHD_Result respond_bytes(request_t *req, unsigned status, const void *data, size_t len, const char *type) {
        return queue(req, status, data, len, type);
}

/* ---- request accessors ---- */

const char *request_query(request_t *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *request_header(request_t *req, const char *name) {
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int request_query_bool(request_t *req, const char *name, bool def, bool *ret) {
        const char *v = request_query(req, name);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!*v) { /* "?force" alone means true */
                *ret = true;
                return 0;
        }
        return parse_bool(v, ret);
}

int request_json(request_t *req, bool empty_ok, json_t **ret, kd_error_t *e) {
        if (req->body_len == 0) {
                if (!empty_ok)
                        return kd_error_set(e, -EINVAL, "invalid_json", "a JSON body is required");
                *ret = json_object();
                return *ret ? 0 : -ENOMEM;
        }
        return schema_decode_body(req->body, req->body_len, ret, e);
}

/* ---- MHD glue ---- */

static void record_peer(request_t *req) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (info && getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
                req->who.known = true;
                req->who.uid = cred.uid;
                req->who.pid = cred.pid;
        }
}

/* Bodies are JSON whatever the label, except for types that plainly say otherwise: a missing type
 * and curl's default for -d (form-urlencoded) are taken for JSON, which must then parse. */
static bool content_type_is_json(const char *type) {
        if (!type)
                return true;
        size_t n = strcspn(type, "; \t");
        return (n == strlen("application/json") && strncasecmp(type, "application/json", n) == 0) ||
               (n == strlen("application/x-www-form-urlencoded") &&
                strncasecmp(type, "application/x-www-form-urlencoded", n) == 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        server_t *s = cls;
        request_t *req = *con_cls;
        if (!req) {
                req = calloc(1, sizeof *req);
                if (!req)
                        return MHD_NO;
                req->conn = conn;
                req->method = method;
                req->url = url;
                record_peer(req);
                *con_cls = req;
                const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                uint64_t n;
                if (len && parse_u64(len, &n) == 0 && n > s->k->config.max_body_bytes)
                        return respond_errorf(req, 413, "payload_too_large", "request body exceeds %zu bytes",
                                              s->k->config.max_body_bytes);
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                if (req->body_too_big || req->body_len + n > s->k->config.max_body_bytes) {
                        req->body_too_big = true;
                        return MHD_YES;
                }
                if (req->body_len + n + 1 > req->body_cap) {
                        size_t cap = req->body_cap ? req->body_cap : 4096;
                        while (cap < req->body_len + n + 1)
                                cap *= 2;
                        char *b = realloc(req->body, cap);
                        if (!b)
                                return MHD_NO;
                        req->body = b;
                        req->body_cap = cap;
                }
                memcpy(req->body + req->body_len, upload_data, n);
                req->body_len += n;
                req->body[req->body_len] = 0;
                return MHD_YES;
        }
        if (req->body_too_big)
                return respond_errorf(req, 413, "payload_too_large", "request body exceeds %zu bytes",
                                      s->k->config.max_body_bytes);
        if (req->body_len > 0 && !content_type_is_json(request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE)))
                return respond_errorf(req, 415, "unsupported_media_type",
                                      "request bodies must be application/json, not %s",
                                      request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE));
        log_debug("%s %s (uid %d)", method, url, req->who.known ? (int) req->who.uid : -1);
        return router_dispatch(s->k, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
        request_t *req = *con_cls;
        if (!req)
                return;
        free(req->body);
        free(req);
        *con_cls = NULL;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decodes in place like libmicrohttpd does, except that an encoded NUL becomes DEL: a NUL
 * would cut the path short ("/v1/sandboxes/a%00/x" must not address sandbox "a"), while DEL is
 * refused by every id check and matches no route. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
        char *out = s;
        for (const char *in = s; *in; in++) {
                int hi, lo;
                if (in[0] == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0) {
                        char c = (char) (hi << 4 | lo);
                        *out++ = c ? c : '\x7f';
                        in += 2;
                } else
                        *out++ = *in;
        }
        *out = 0;
        return (size_t) (out - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char msg[1024];
        vsnprintf(msg, sizeof msg, fmt, ap);
        msg[strcspn(msg, "\n")] = 0;
        log_debug("libmicrohttpd: %s", msg);
}

int server_start(katad_t *k, int listen_fd, server_t **ret) {
        server_t *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->k = k;
        s->listen_fd = listen_fd;
        s->mhd = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_UPGRADE |
                        MHD_USE_ITC | MHD_USE_ERROR_LOG,
                0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED,
                on_completed, s, MHD_OPTION_CONNECTION_LIMIT, k->config.max_connections,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 600, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                MHD_OPTION_UNESCAPE_CALLBACK, unescape, s,
                MHD_OPTION_END);
        if (!s->mhd) {
                free(s);
                return log_error_errno(EIO, "Failed to start the HTTP server");
        }
        *ret = s;
        return 0;
}

void server_quiesce(server_t *s) {
        if (!s || s->listen_fd < 0)
                return;
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
                close(fd);
        s->listen_fd = -1;
}

void server_stop(server_t *s) {
        if (!s)
                return;
        MHD_stop_daemon(s->mhd);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        free(s);
}
