/* The route table and the dispatcher. */
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "macro.h"
#include "router.h"

#define SB "/v1/sandboxes/{sid}"
#define CT SB "/containers/{cid}"
#define PR CT "/processes/{pid}"

static const route_t routes[] = {
        { "GET", "/", handle_versions },
        { "GET", "/v1", handle_info },
        { "GET", "/v1/sandboxes", handle_sandbox_list },
        { "POST", "/v1/sandboxes", handle_sandbox_create },
        { "GET", SB, handle_sandbox_status },
        { "DELETE", SB, handle_sandbox_delete },
        { "POST", SB "/start", handle_sandbox_start },
        { "POST", SB "/stop", handle_sandbox_stop },
        { "POST", SB "/pause", handle_sandbox_pause },
        { "POST", SB "/resume", handle_sandbox_resume },
        { "POST", SB "/release", handle_sandbox_release },
        { "GET", SB "/stats", handle_sandbox_stats },
        { "GET", SB "/annotations", handle_annotations_get },
        { "PATCH", SB "/annotations", handle_annotations_patch },
        { "GET", SB "/containers", handle_container_list },
        { "POST", SB "/containers", handle_container_create },
        { "GET", CT, handle_container_status },
        { "DELETE", CT, handle_container_delete },
        { "POST", CT "/start", handle_container_start },
        { "POST", CT "/stop", handle_container_stop },
        { "POST", CT "/pause", handle_container_pause },
        { "POST", CT "/resume", handle_container_resume },
        { "POST", CT "/kill", handle_container_kill },
        { "GET", CT "/stats", handle_container_stats },
        { "PUT", CT "/resources", handle_container_update },
        { "GET", CT "/ps", handle_container_ps },
        { "GET", CT "/logs", handle_container_logs },
        { "POST", CT "/processes", handle_process_exec },
        { "POST", PR "/wait", handle_process_wait },
        { "POST", PR "/signal", handle_process_signal },
        { "POST", PR "/winsize", handle_process_winsize },
        { "GET", PR "/io", handle_not_implemented },
        { "POST", SB "/devices", handle_not_implemented },
        { "GET", SB "/interfaces", handle_not_implemented },
        { "POST", SB "/interfaces", handle_not_implemented },
        { "DELETE", SB "/interfaces/{name}", handle_not_implemented },
        { "GET", SB "/routes", handle_not_implemented },
        { "PUT", SB "/routes", handle_not_implemented },
        { "GET", "/v1/events", handle_events },
        { "GET", "/v1/factory", handle_not_implemented },
        { "POST", "/v1/factory", handle_not_implemented },
        { "DELETE", "/v1/factory", handle_not_implemented },
};

/* Matches path against one pattern, collecting {param} segments. */
static bool match_pattern(const char *pattern, const char *path, size_t path_len, char params[][ROUTE_PARAM_MAX],
                          size_t *n_params) {
        const char *p = pattern, *u = path, *end = path + path_len;
        size_t n = 0;
        while (*p && u < end) {
                if (*p != '/' || *u != '/')
                        return false;
                p++;
                u++;
                const char *pseg_end = strchrnul(p, '/');
                const char *useg_end = memchr(u, '/', (size_t) (end - u));
                if (!useg_end)
                        useg_end = end;
                size_t plen = (size_t) (pseg_end - p), ulen = (size_t) (useg_end - u);
                if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
                        if (ulen == 0 || ulen >= ROUTE_PARAM_MAX || n >= ROUTE_MAX_PARAMS)
                                return false;
                        memcpy(params[n], u, ulen);
                        params[n][ulen] = 0;
                        n++;
                } else if (plen != ulen || memcmp(p, u, plen) != 0)
                        return false;
                p = pseg_end;
                u = useg_end;
        }
        if (*p || u != end)
                return false;
        *n_params = n;
        return true;
}

route_match_t router_match(const char *method, const char *path, const route_t **ret,
                           char params[][ROUTE_PARAM_MAX], size_t *n_params, char *allow, size_t allow_size) {
        size_t len = strlen(path);
        if (len > 1 && path[len - 1] == '/')
                len--;
        if (allow_size)
                allow[0] = 0;
        bool path_known = false;
        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                char scratch[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
                size_t n;
                if (!match_pattern(routes[i].pattern, path, len, scratch, &n))
                        continue;
                if (streq(routes[i].method, method)) {
                        memcpy(params, scratch, sizeof scratch);
                        *n_params = n;
                        *ret = &routes[i];
                        return ROUTE_FOUND;
                }
                path_known = true;
                if (!allow_size)
                        continue;
                size_t used = strlen(allow);
                snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "", routes[i].method);
        }
        return path_known ? ROUTE_METHOD_NOT_ALLOWED : ROUTE_NOT_FOUND;
}

enum MHD_Result router_dispatch(katad_t *k, request_t *req) {
        const route_t *route;
        char allow[128];
        switch (router_match(req->method, req->url, &route, req->params, &req->n_params, allow, sizeof allow)) {
        case ROUTE_FOUND:
                return route->handler(k, req);
        case ROUTE_METHOD_NOT_ALLOWED: {
                kd_error_t e = { .status = 405 };
                snprintf(e.code, sizeof e.code, "method_not_allowed");
                snprintf(e.message, sizeof e.message, "%.16s is not allowed on %.200s (allowed: %s)", req->method,
                         req->url, allow);
                return respond_error_header(req, &e, MHD_HTTP_HEADER_ALLOW, allow);
        }
        default:
                return respond_errorf(req, 404, "route_not_found", "no route for %s %.200s", req->method, req->url);
        }
}

void router_print_routes(FILE *f) {
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                fprintf(f, "%s %s\n", routes[i].method, routes[i].pattern);
}
