/* Unit tests for daemon/router.h: every route matches with its parameters, 404 and 405 with the
 * exact Allow list, segment edge cases, and the route listing behind `katad --list-routes`. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/handlers.h"
#include "daemon/router.h"
#include "macro.h"

typedef struct expected_route {
        const char *method;
        const char *pattern;
        handler_fn handler;
} expected_route_t;

/* The API as `katad --list-routes` prints it, with the handler each route must reach. */
static const expected_route_t expected[] = {
        {"GET", "/", handle_versions},
        {"GET", "/v1", handle_info},
        {"GET", "/v1/sandboxes", handle_sandbox_list},
        {"POST", "/v1/sandboxes", handle_sandbox_create},
        {"GET", "/v1/sandboxes/{sid}", handle_sandbox_status},
        {"DELETE", "/v1/sandboxes/{sid}", handle_sandbox_delete},
        {"POST", "/v1/sandboxes/{sid}/start", handle_sandbox_start},
        {"POST", "/v1/sandboxes/{sid}/stop", handle_sandbox_stop},
        {"POST", "/v1/sandboxes/{sid}/pause", handle_sandbox_pause},
        {"POST", "/v1/sandboxes/{sid}/resume", handle_sandbox_resume},
        {"POST", "/v1/sandboxes/{sid}/release", handle_sandbox_release},
        {"GET", "/v1/sandboxes/{sid}/stats", handle_sandbox_stats},
        {"GET", "/v1/sandboxes/{sid}/annotations", handle_annotations_get},
        {"PATCH", "/v1/sandboxes/{sid}/annotations", handle_annotations_patch},
        {"GET", "/v1/sandboxes/{sid}/containers", handle_container_list},
        {"POST", "/v1/sandboxes/{sid}/containers", handle_container_create},
        {"GET", "/v1/sandboxes/{sid}/containers/{cid}", handle_container_status},
        {"DELETE", "/v1/sandboxes/{sid}/containers/{cid}", handle_container_delete},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/start", handle_container_start},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/stop", handle_container_stop},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/pause", handle_container_pause},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/resume", handle_container_resume},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/kill", handle_container_kill},
        {"GET", "/v1/sandboxes/{sid}/containers/{cid}/stats", handle_container_stats},
        {"PUT", "/v1/sandboxes/{sid}/containers/{cid}/resources", handle_container_update},
        {"GET", "/v1/sandboxes/{sid}/containers/{cid}/ps", handle_container_ps},
        {"GET", "/v1/sandboxes/{sid}/containers/{cid}/logs", handle_container_logs},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/processes", handle_process_exec},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}/wait", handle_process_wait},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}/signal", handle_process_signal},
        {"POST", "/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}/winsize", handle_process_winsize},
        {"GET", "/v1/sandboxes/{sid}/containers/{cid}/processes/{pid}/io", handle_not_implemented},
        {"POST", "/v1/sandboxes/{sid}/devices", handle_not_implemented},
        {"GET", "/v1/sandboxes/{sid}/interfaces", handle_not_implemented},
        {"POST", "/v1/sandboxes/{sid}/interfaces", handle_not_implemented},
        {"DELETE", "/v1/sandboxes/{sid}/interfaces/{name}", handle_not_implemented},
        {"GET", "/v1/sandboxes/{sid}/routes", handle_not_implemented},
        {"PUT", "/v1/sandboxes/{sid}/routes", handle_not_implemented},
        {"GET", "/v1/events", handle_events},
        {"GET", "/v1/factory", handle_not_implemented},
        {"POST", "/v1/factory", handle_not_implemented},
        {"DELETE", "/v1/factory", handle_not_implemented},
};

/* Sample values per parameter name; they use every id character class. */
static const char *param_value(const char *name, size_t len) {
        if (len == 3 && strncmp(name, "sid", 3) == 0)
                return "web-1";
        if (len == 3 && strncmp(name, "cid", 3) == 0)
                return "nginx_2.x";
        if (len == 3 && strncmp(name, "pid", 3) == 0)
                return "Exec3";
        if (len == 4 && strncmp(name, "name", 4) == 0)
                return "eth0";
        ck_abort_msg("unknown parameter %.*s", (int) len, name);
        return NULL;
}

/* Expands "{sid}"-style segments into sample values; collects the values in order. */
static void expand_pattern(const char *pattern, char *out, size_t size, const char *values[], size_t *n_values) {
        size_t n = 0, used = 0;
        out[0] = 0;
        for (const char *p = pattern; *p;) {
                if (*p == '{') {
                        const char *close = strchr(p, '}');
                        ck_assert_ptr_nonnull(close);
                        const char *v = param_value(p + 1, (size_t) (close - p - 1));
                        values[n++] = v;
                        used += (size_t) snprintf(out + used, size - used, "%s", v);
                        p = close + 1;
                } else {
                        ck_assert_uint_lt(used + 1, size);
                        out[used++] = *p++;
                        out[used] = 0;
                }
        }
        *n_values = n;
}

/* The methods a path template has, in table order, as the router lists them. */
static void expected_allow(const char *pattern, char *out, size_t size) {
        out[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(expected); i++)
                if (streq(expected[i].pattern, pattern)) {
                        size_t used = strlen(out);
                        snprintf(out + used, size - used, "%s%s", used ? ", " : "", expected[i].method);
                }
}

static route_match_t match(const char *method, const char *path, const route_t **ret,
                           char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX], size_t *n_params, char *allow,
                           size_t allow_size) {
        return router_match(method, path, ret, params, n_params, allow, allow_size);
}

static void assert_not_found(const char *method, const char *path) {
        const route_t *sentinel = (const route_t *) 0x1, *route = sentinel;
        char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
        size_t n = 99;
        char allow[128] = "junk";
        route_match_t m = match(method, path, &route, params, &n, allow, sizeof allow);
        ck_assert_msg(m == ROUTE_NOT_FOUND, "%s %s: match %d, expected ROUTE_NOT_FOUND", method, path, m);
        ck_assert_ptr_eq(route, sentinel);
        ck_assert_uint_eq(n, 99);
        ck_assert_str_eq(allow, "");
}

static void assert_not_allowed(const char *method, const char *path, const char *allow_expected) {
        const route_t *sentinel = (const route_t *) 0x1, *route = sentinel;
        char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
        size_t n = 99;
        char allow[128] = "junk";
        route_match_t m = match(method, path, &route, params, &n, allow, sizeof allow);
        ck_assert_msg(m == ROUTE_METHOD_NOT_ALLOWED, "%s %s: match %d, expected ROUTE_METHOD_NOT_ALLOWED", method, path,
                      m);
        ck_assert_msg(streq(allow, allow_expected), "%s %s: Allow \"%s\", expected \"%s\"", method, path, allow,
                      allow_expected);
        ck_assert_ptr_eq(route, sentinel);
}

static const route_t *assert_found(const char *method, const char *path, size_t n_expected, const char *const *values) {
        const route_t *route = NULL;
        char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
        size_t n = 99;
        char allow[128];
        route_match_t m = match(method, path, &route, params, &n, allow, sizeof allow);
        ck_assert_msg(m == ROUTE_FOUND, "%s %s: match %d, expected ROUTE_FOUND", method, path, m);
        ck_assert_ptr_nonnull(route);
        ck_assert_str_eq(route->method, method);
        ck_assert_uint_eq(n, n_expected);
        for (size_t i = 0; i < n_expected; i++)
                ck_assert_msg(streq(params[i], values[i]), "%s %s: param %zu \"%s\", expected \"%s\"", method, path, i,
                              params[i], values[i]);
        return route;
}

START_TEST(test_every_route_matches) {
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                char path[512];
                const char *values[ROUTE_MAX_PARAMS + 1];
                size_t n;
                expand_pattern(expected[i].pattern, path, sizeof path, values, &n);
                const route_t *route = assert_found(expected[i].method, path, n, values);
                ck_assert_str_eq(route->pattern, expected[i].pattern);
                ck_assert_msg(route->handler == expected[i].handler, "%s %s reaches the wrong handler",
                              expected[i].method, expected[i].pattern);
        }
}
END_TEST

START_TEST(test_every_route_trailing_slash) {
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                char path[512];
                const char *values[ROUTE_MAX_PARAMS + 1];
                size_t n;
                expand_pattern(expected[i].pattern, path, sizeof path, values, &n);
                if (!streq(path, "/"))
                        strcat(path, "/");
                const route_t *route = assert_found(expected[i].method, path, n, values);
                ck_assert_str_eq(route->pattern, expected[i].pattern);
                /* Only one trailing slash is ignored. */
                if (!streq(path, "/")) {
                        strcat(path, "/");
                        assert_not_found(expected[i].method, path);
                }
        }
}
END_TEST

START_TEST(test_every_path_wrong_method) {
        static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"};
        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                char path[512], allow[128];
                const char *values[ROUTE_MAX_PARAMS + 1];
                size_t n;
                expand_pattern(expected[i].pattern, path, sizeof path, values, &n);
                expected_allow(expected[i].pattern, allow, sizeof allow);
                for (size_t m = 0; m < ELEMENTSOF(methods); m++) {
                        bool allowed = false;
                        for (size_t j = 0; j < ELEMENTSOF(expected); j++)
                                if (streq(expected[j].pattern, expected[i].pattern) &&
                                    streq(expected[j].method, methods[m]))
                                        allowed = true;
                        if (!allowed)
                                assert_not_allowed(methods[m], path, allow);
                }
        }
}
END_TEST

START_TEST(test_allow_lists) {
        assert_not_allowed("DELETE", "/v1/sandboxes", "GET, POST");
        assert_not_allowed("PUT", "/v1/sandboxes/", "GET, POST");
        assert_not_allowed("POST", "/", "GET");
        assert_not_allowed("DELETE", "/v1", "GET");
        assert_not_allowed("POST", "/v1/sandboxes/web", "GET, DELETE");
        assert_not_allowed("GET", "/v1/sandboxes/web/start", "POST");
        assert_not_allowed("POST", "/v1/sandboxes/web/annotations", "GET, PATCH");
        assert_not_allowed("PUT", "/v1/sandboxes/web/containers", "GET, POST");
        assert_not_allowed("PATCH", "/v1/sandboxes/web/containers/c", "GET, DELETE");
        assert_not_allowed("POST", "/v1/sandboxes/web/containers/c/resources", "PUT");
        assert_not_allowed("GET", "/v1/sandboxes/web/containers/c/processes", "POST");
        assert_not_allowed("POST", "/v1/sandboxes/web/containers/c/processes/p/io", "GET");
        assert_not_allowed("DELETE", "/v1/sandboxes/web/interfaces", "GET, POST");
        assert_not_allowed("GET", "/v1/sandboxes/web/interfaces/eth0", "DELETE");
        assert_not_allowed("POST", "/v1/sandboxes/web/routes", "GET, PUT");
        assert_not_allowed("POST", "/v1/events", "GET");
        assert_not_allowed("PUT", "/v1/factory", "GET, POST, DELETE");
        /* Methods are case-sensitive (RFC 9110). */
        assert_not_allowed("get", "/v1/sandboxes", "GET, POST");
        assert_not_allowed("", "/v1", "GET");
}
END_TEST

START_TEST(test_allow_truncated) {
        const route_t *route = NULL;
        char params[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
        size_t n;
        char allow[5];
        memset(allow, 'x', sizeof allow);
        ck_assert_int_eq(match("PUT", "/v1/factory", &route, params, &n, allow, sizeof allow),
                         ROUTE_METHOD_NOT_ALLOWED);
        ck_assert_str_eq(allow, "GET,");
        char one[1] = {'x'};
        ck_assert_int_eq(match("PUT", "/v1/factory", &route, params, &n, one, sizeof one), ROUTE_METHOD_NOT_ALLOWED);
        ck_assert_int_eq(one[0], 0);
}
END_TEST

START_TEST(test_not_found) {
        const char *paths[] = {
                "",
                "v1",
                "v1/sandboxes",
                "/v2",
                "/v10",
                "/v1/sandbox",
                "/v1/sandboxesx",
                "/V1/sandboxes",
                "/v1/Sandboxes",
                "/v1/sandboxes/web/unknown",
                "/v1/sandboxes/web/start/now",                /* extra segment */
                "/v1/sandboxes/web/containers/c/processes/p", /* no route for a bare process */
                "/v1/sandboxes/web/containers/c/processes/p/wait/x",
                "/v1/sandboxes/web/containers/c/kill/9",
                "/v1/sandboxes/web/interfaces/eth0/up",
                "/v1/events/x",
                "/v1/factory/x",
                "/x/v1",
                "/v1/sandboxes/web/containers/c/processes/p/q/wait",
        };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                assert_not_found("GET", paths[i]);
                assert_not_found("POST", paths[i]);
        }
}
END_TEST

START_TEST(test_missing_segments) {
        /* Without its {sid}, a verb is taken as the sid: the path exists, the method does not. */
        assert_not_allowed("POST", "/v1/sandboxes/start", "GET, DELETE");
        assert_not_allowed("POST", "/v1/sandboxes/web/containers/start", "GET, DELETE");
        /* Without its {pid} there is no such path at all. */
        assert_not_found("POST", "/v1/sandboxes/web/containers/c/processes/wait");
        assert_not_found("POST", "/v1/sandboxes/web/containers/processes/p/wait");
        assert_not_found("GET", "/v1/sandboxes/containers/c");
        /* Without {name}, the trailing slash is dropped and the collection answers. */
        assert_not_allowed("DELETE", "/v1/sandboxes/web/interfaces/", "GET, POST");
}
END_TEST

START_TEST(test_empty_segments) {
        const char *paths[] = {
                "/v1/sandboxes//start",
                "/v1//sandboxes",
                "//v1",
                "/v1/sandboxes//",
                "/v1/sandboxes///",
                "/v1/sandboxes/web//containers",
                "/v1/sandboxes/web/containers//start",
                "/v1/sandboxes/web/containers/c/processes//wait",
                "/v1/sandboxes/web/interfaces//",
                "/v1/sandboxes/web/containers/c//",
        };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                for (size_t m = 0; m < 3; m++)
                        assert_not_found((const char *[]){"GET", "POST", "DELETE"}[m], paths[i]);
}
END_TEST

START_TEST(test_param_values_verbatim) {
        /* A parameter is one raw segment: no decoding, no validation (the handler validates ids). */
        const char *v1[] = {"a%2Fb"};
        assert_found("GET", "/v1/sandboxes/a%2Fb", 1, v1);
        const char *v2[] = {"..", "."};
        assert_found("GET", "/v1/sandboxes/../containers/.", 2, v2);
        const char *v3[] = {"start"};
        /* "/v1/sandboxes/start" is sandbox "start", not the start verb. */
        assert_found("GET", "/v1/sandboxes/start", 1, v3);
        const char *v4[] = {"s", "c", "p"};
        assert_found("POST", "/v1/sandboxes/s/containers/c/processes/p/signal/", 3, v4);
        const char *v5[] = {"sandbox with space?x=1"};
        assert_found("DELETE", "/v1/sandboxes/sandbox with space?x=1", 1, v5);
}
END_TEST

START_TEST(test_param_length_limit) {
        char path[1024], value[ROUTE_PARAM_MAX + 2];
        const char *values[3];

        memset(value, 'a', ROUTE_PARAM_MAX - 1);
        value[ROUTE_PARAM_MAX - 1] = 0;
        snprintf(path, sizeof path, "/v1/sandboxes/%s", value);
        values[0] = value;
        assert_found("GET", path, 1, values);
        snprintf(path, sizeof path, "/v1/sandboxes/s/containers/%s/processes/%s/wait", value, value);
        values[0] = "s";
        values[1] = value;
        values[2] = value;
        assert_found("POST", path, 3, values);

        memset(value, 'a', ROUTE_PARAM_MAX);
        value[ROUTE_PARAM_MAX] = 0;
        snprintf(path, sizeof path, "/v1/sandboxes/%s", value);
        assert_not_found("GET", path);
        assert_not_found("DELETE", path);
        snprintf(path, sizeof path, "/v1/sandboxes/%s/start", value);
        assert_not_found("POST", path);
        snprintf(path, sizeof path, "/v1/sandboxes/s/containers/%s", value);
        assert_not_found("GET", path);
        snprintf(path, sizeof path, "/v1/sandboxes/s/interfaces/%s", value);
        assert_not_found("DELETE", path);
        snprintf(path, sizeof path, "/v1/sandboxes/s/containers/c/processes/%s/wait", value);
        assert_not_found("POST", path);
}
END_TEST

START_TEST(test_print_routes) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        ck_assert_ptr_nonnull(f);
        router_print_routes(f);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_ptr_nonnull(text);

        size_t lines = 0;
        char *save = NULL;
        char *seen[128];
        ck_assert_int_eq(text[size - 1], '\n');
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                ck_assert_uint_lt(lines, ELEMENTSOF(expected));
                char want[256];
                snprintf(want, sizeof want, "%s %s", expected[lines].method, expected[lines].pattern);
                ck_assert_str_eq(line, want);
                for (size_t j = 0; j < lines; j++)
                        ck_assert_msg(!streq(seen[j], line), "duplicate route \"%s\"", line);
                seen[lines++] = line;
        }
        ck_assert_uint_eq(lines, ELEMENTSOF(expected));
        ck_assert_uint_eq(lines, ELEMENTSOF(expected));
        free(text);
}
END_TEST

START_TEST(test_no_ambiguous_routes) {
        /* No two routes share a method and a shape, or one would shadow the other. */
        for (size_t i = 0; i < ELEMENTSOF(expected); i++)
                for (size_t j = i + 1; j < ELEMENTSOF(expected); j++)
                        ck_assert_msg(!(streq(expected[i].method, expected[j].method) &&
                                        streq(expected[i].pattern, expected[j].pattern)),
                                      "duplicate %s %s", expected[i].method, expected[i].pattern);
}
END_TEST

static Suite *router_suite(void) {
        Suite *s = suite_create("router");
        TCase *tc = tcase_create("match");
        tcase_add_test(tc, test_every_route_matches);
        tcase_add_test(tc, test_every_route_trailing_slash);
        tcase_add_test(tc, test_every_path_wrong_method);
        tcase_add_test(tc, test_allow_lists);
        tcase_add_test(tc, test_allow_truncated);
        tcase_add_test(tc, test_not_found);
        tcase_add_test(tc, test_missing_segments);
        tcase_add_test(tc, test_empty_segments);
        tcase_add_test(tc, test_param_values_verbatim);
        tcase_add_test(tc, test_param_length_limit);
        suite_add_tcase(s, tc);

        tc = tcase_create("list");
        tcase_add_test(tc, test_print_routes);
        tcase_add_test(tc, test_no_ambiguous_routes);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(router_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
