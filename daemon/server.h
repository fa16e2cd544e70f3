/* The HTTP side of katad: libmicrohttpd on a Unix socket, one thread per connection, request
 * bodies collected up to a limit, responses in the common JSON shapes. */
#pragma once

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"
#include "core/manager.h"
#include "katad.h"

#define ROUTE_MAX_PARAMS 4
#define ROUTE_PARAM_MAX 256

typedef struct request {
        struct MHD_Connection *conn;
        const char *method;
        const char *url;
        char *body;
        size_t body_len, body_cap;
        bool body_too_big;
        kd_caller_t who;
        char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
        size_t n_params;
} request_t;

/* Starts serving on listen_fd (a bound, listening Unix socket owned by the server from now on). */
int server_start(katad_t *k, int listen_fd, server_t **ret);
/* Stops accepting new connections; requests in flight go on. */
void server_quiesce(server_t *s);
/* Waits for requests in flight and frees. Accepts NULL. */
void server_stop(server_t *s);

/* Response helpers; each returns what the access handler must return. */
enum MHD_Result respond_json(request_t *req, unsigned status, json_t *body); /* body consumed */
enum MHD_Result respond_error(request_t *req, const kd_error_t *e);
/* The error response with one extra header (e.g. Allow on a 405). */
enum MHD_Result respond_error_header(request_t *req, const kd_error_t *e, const char *header, const char *value);
enum MHD_Result respond_errorf(request_t *req, unsigned status, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
enum MHD_Result respond_empty(request_t *req, unsigned status);
enum MHD_Result respond_text(request_t *req, unsigned status, const char *text);
enum MHD_Result respond_bytes(request_t *req, unsigned status, const void *data, size_t len, const char *type);

/* The query parameter, or NULL. */
const char *request_query(request_t *req, const char *name);
/* A boolean query flag: absent → def; malformed → -EINVAL. */
int request_query_bool(request_t *req, const char *name, bool def, bool *ret);
/* Decodes the body as a JSON object; an empty body gives an empty object when empty_ok. */
int request_json(request_t *req, bool empty_ok, json_t **ret, kd_error_t *e);
/* The value of a request header, or NULL. */
const char *request_header(request_t *req, const char *name);
