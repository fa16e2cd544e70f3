/* The route table: every (method, path template) katad serves, and the dispatcher. */
#pragma once

#include <stdio.h>

#include "server.h"

typedef enum MHD_Result (*handler_fn)(katad_t *k, request_t *req);

typedef struct route {
        const char *method;
        const char *pattern; /* "/v1/sandboxes/{sid}"; a {name} segment matches one path segment */
        handler_fn handler;
} route_t;

typedef enum route_match {
        ROUTE_FOUND,
        ROUTE_NOT_FOUND,
        ROUTE_METHOD_NOT_ALLOWED,
} route_match_t;

/* Matches a request; on ROUTE_FOUND *ret and params are set; on ROUTE_METHOD_NOT_ALLOWED allow
 * holds the comma-separated methods the path has. A single trailing slash is ignored. */
route_match_t router_match(const char *method, const char *path, const route_t **ret,
                           char params[][ROUTE_PARAM_MAX], size_t *n_params, char *allow, size_t allow_size);
/* Routes a request to its handler, or answers 404/405 in the common error shape. */
enum MHD_Result router_dispatch(katad_t *k, request_t *req);
/* Prints "METHOD /path/{param}" for every route, one per line. */
void router_print_routes(FILE *f);
