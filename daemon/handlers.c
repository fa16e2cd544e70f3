/* Request handlers: HTTP in, manager call, JSON out. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "core/schema.h"
#include "handlers.h"
#include "json-util.h"
#include "log.h"
#include "util.h"

#define SID (req->params[0])
#define CID (req->params[1])
#define PID (req->params[2])

/* Answers with the result of a manager call: the JSON on success, the error otherwise. */
static enum MHD_Result reply(request_t *req, int r, const kd_error_t *e, unsigned status, json_t *result) {
        if (r < 0) {
                json_decref(result);
                if (e->code[0])
                        return respond_error(req, e);
                kd_error_t internal;
                kd_error_set(&internal, r, "internal", "%s", strerror(-r));
                return respond_error(req, &internal);
        }
        if (status == 204) {
                json_decref(result);
                return respond_empty(req, 204);
        }
        return respond_json(req, status, result);
}

static int query_options(request_t *req, action_options_t *opts, kd_error_t *e) {
        *opts = (action_options_t) { .timeout_sec = -1 };
        if (request_query_bool(req, "force", false, &opts->force) < 0)
                return kd_error_set(e, -EINVAL, "invalid_query", "force must be true or false");
        const char *t = request_query(req, "timeout");
        uint64_t v;
        if (t) {
                if (parse_u64(t, &v) < 0 || v > 3600)
                        return kd_error_set(e, -EINVAL, "invalid_query", "timeout must be a number of seconds (0-3600)");
                opts->timeout_sec = (int) v;
        }
        return 0;
}

HANDLER(handle_versions) {
        return respond_json(req, 200, json_pack("{s:[s], s:s}", "APIVersions", "v1", "Name", "katad"));
}

HANDLER(handle_info) {
        return respond_json(req, 200,
                            json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:{s:b, s:b, s:b, s:b}}", "Name", "katad",
                                      "Version", PACKAGE_VERSION, "APIVersion", "v1", "Hypervisors",
                                      manager_hypervisors(k->manager), "DefaultHypervisor", k->config.hypervisor, "Store",
                                      k->config.store, "Capabilities", "iostream", 0, "hotplug", 0, "factory", 0,
                                      "events", 1));
}

HANDLER(handle_sandbox_list) {
        json_t *list = NULL;
        int r = manager_sandbox_list(k->manager, &list);
        kd_error_t e = { 0 };
        return reply(req, r, &e, 200, list);
}

HANDLER(handle_sandbox_create) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *config = NULL;
        json_t *status = NULL;
        bool start;
        int r = request_query_bool(req, "start", false, &start);
        if (r < 0)
                return respond_errorf(req, 400, "invalid_query", "start must be true or false");
        r = request_json(req, false, &config, &e);
        if (r >= 0)
                r = manager_sandbox_create(k->manager, config, start, &req->who, &e, &status);
        return reply(req, r, &e, 201, status);
}

HANDLER(handle_sandbox_status) {
        kd_error_t e = { 0 };
        json_t *status = NULL;
        int r = manager_sandbox_status(k->manager, SID, &e, &status);
        return reply(req, r, &e, 200, status);
}

HANDLER(handle_sandbox_delete) {
        kd_error_t e = { 0 };
        action_options_t opts;
        int r = query_options(req, &opts, &e);
        if (r >= 0)
                r = manager_sandbox_delete(k->manager, SID, opts.force, &req->who, &e);
        return reply(req, r, &e, 204, NULL);
}

static enum MHD_Result sandbox_action(katad_t *k, request_t *req, sandbox_action_t action) {
        kd_error_t e = { 0 };
        action_options_t opts;
        json_t *status = NULL;
        int r = query_options(req, &opts, &e);
        if (r >= 0)
                r = manager_sandbox_action(k->manager, SID, action, &opts, &req->who, &e, &status);
        return reply(req, r, &e, 200, status);
}

HANDLER(handle_sandbox_start) {
        return sandbox_action(k, req, SANDBOX_START);
}

HANDLER(handle_sandbox_stop) {
        return sandbox_action(k, req, SANDBOX_STOP);
}

HANDLER(handle_sandbox_pause) {
        return sandbox_action(k, req, SANDBOX_PAUSE);
}

HANDLER(handle_sandbox_resume) {
        return sandbox_action(k, req, SANDBOX_RESUME);
}

HANDLER(handle_sandbox_release) {
        return sandbox_action(k, req, SANDBOX_RELEASE);
}

HANDLER(handle_sandbox_stats) {
        kd_error_t e = { 0 };
        json_t *stats = NULL;
        int r = manager_sandbox_stats(k->manager, SID, &e, &stats);
        return reply(req, r, &e, 200, stats);
}

HANDLER(handle_annotations_get) {
        kd_error_t e = { 0 };
        json_t *ann = NULL;
        int r = manager_sandbox_annotations(k->manager, SID, NULL, &req->who, &e, &ann);
        return reply(req, r, &e, 200, ann);
}

HANDLER(handle_annotations_patch) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *patch = NULL;
        json_t *ann = NULL;
        int r = request_json(req, false, &patch, &e);
        if (r >= 0)
                r = manager_sandbox_annotations(k->manager, SID, patch, &req->who, &e, &ann);
        return reply(req, r, &e, 200, ann);
}

HANDLER(handle_container_list) {
        kd_error_t e = { 0 };
        json_t *list = NULL;
        int r = manager_container_list(k->manager, SID, &e, &list);
        return reply(req, r, &e, 200, list);
}

HANDLER(handle_container_create) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *config = NULL;
        json_t *status = NULL;
        int r = request_json(req, false, &config, &e);
        if (r >= 0)
                r = manager_container_create(k->manager, SID, config, &req->who, &e, &status);
        return reply(req, r, &e, 201, status);
}

HANDLER(handle_container_status) {
        kd_error_t e = { 0 };
        json_t *status = NULL;
        int r = manager_container_status(k->manager, SID, CID, &e, &status);
        return reply(req, r, &e, 200, status);
}

HANDLER(handle_container_delete) {
        kd_error_t e = { 0 };
        action_options_t opts;
        int r = query_options(req, &opts, &e);
        if (r >= 0)
                r = manager_container_delete(k->manager, SID, CID, opts.force, &req->who, &e);
        return reply(req, r, &e, 204, NULL);
}

static enum MHD_Result container_action(katad_t *k, request_t *req, container_action_t action) {
        kd_error_t e = { 0 };
        action_options_t opts;
        json_t *status = NULL;
        int r = query_options(req, &opts, &e);
        if (r >= 0)
                r = manager_container_action(k->manager, SID, CID, action, &opts, &req->who, &e, &status);
        return reply(req, r, &e, 200, status);
}

HANDLER(handle_container_start) {
        return container_action(k, req, CONTAINER_START);
}

HANDLER(handle_container_stop) {
        return container_action(k, req, CONTAINER_STOP);
}

HANDLER(handle_container_pause) {
        return container_action(k, req, CONTAINER_PAUSE);
}

HANDLER(handle_container_resume) {
        return container_action(k, req, CONTAINER_RESUME);
}

/* Decodes {"Signal": 9 | "SIGKILL", "All": bool}. */
static int signal_body(request_t *req, int *ret_signal, bool *ret_all, kd_error_t *e) {
        _cleanup_json_ json_t *body = NULL;
        int r = request_json(req, false, &body, e);
        if (r < 0)
                return r;
        r = schema_check(body, schema_signal_request, "body", e);
        if (r < 0)
                return r;
        json_t *sig = json_object_get(body, "Signal");
        *ret_signal = json_is_integer(sig) ? (int) json_integer_value(sig) : signal_from_string(json_string_value(sig));
        *ret_all = json_get_bool(body, "All", false);
        return 0;
}

HANDLER(handle_container_kill) {
        kd_error_t e = { 0 };
        int sig;
        bool all;
        int r = signal_body(req, &sig, &all, &e);
        if (r >= 0)
                r = manager_container_kill(k->manager, SID, CID, sig, all, &req->who, &e);
        return reply(req, r, &e, 204, NULL);
}

HANDLER(handle_container_stats) {
        kd_error_t e = { 0 };
        json_t *stats = NULL;
        int r = manager_container_stats(k->manager, SID, CID, &e, &stats);
        return reply(req, r, &e, 200, stats);
}

HANDLER(handle_container_update) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *resources = NULL;
        json_t *result = NULL;
        int r = request_json(req, false, &resources, &e);
        if (r >= 0)
                r = manager_container_update(k->manager, SID, CID, resources, &req->who, &e, &result);
        return reply(req, r, &e, 200, result);
}

/* Collects every args= query value, each split on blanks, in order. */
static enum MHD_Result collect_args(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        json_t *argv = cls;
        if (!key || !streq(key, "args") || !value)
                return MHD_YES;
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;
        for (char *w = copy ? strtok_r(copy, " \t", &save) : NULL; w; w = strtok_r(NULL, " \t", &save))
                json_array_append_new(argv, json_string(w));
        return MHD_YES;
}

HANDLER(handle_container_ps) {
        kd_error_t e = { 0 };
        const char *format = request_query(req, "format");
        _cleanup_json_ json_t *argv = json_array();
        json_t *result = NULL;
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_args, argv);
        int r = manager_container_ps(k->manager, SID, CID, format, argv, &e, &result);
        if (r >= 0 && format && streq(format, "table")) {
                enum MHD_Result m = respond_text(req, 200, json_get_string(result, "Output") ?: "");
                json_decref(result);
                return m;
        }
        return reply(req, r, &e, 200, result);
}

HANDLER(handle_container_logs) {
        kd_error_t e = { 0 };
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = manager_container_logs(k->manager, SID, CID, &e, &data, &len);
        if (r < 0)
                return reply(req, r, &e, 200, NULL);
        return respond_bytes(req, 200, data, len, "text/plain; charset=utf-8");
}

HANDLER(handle_process_exec) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *cmd = NULL;
        json_t *process = NULL;
        int r = request_json(req, false, &cmd, &e);
        if (r >= 0)
                r = manager_process_exec(k->manager, SID, CID, cmd, &req->who, &e, &process);
        return reply(req, r, &e, 201, process);
}

HANDLER(handle_process_wait) {
        kd_error_t e = { 0 };
        json_t *result = NULL;
        int r = manager_process_wait(k->manager, SID, CID, PID, &e, &result);
        return reply(req, r, &e, 200, result);
}

HANDLER(handle_process_signal) {
        kd_error_t e = { 0 };
        int sig;
        bool all;
        int r = signal_body(req, &sig, &all, &e);
        if (r >= 0)
                r = manager_process_signal(k->manager, SID, CID, PID, sig, all, &req->who, &e);
        return reply(req, r, &e, 204, NULL);
}

HANDLER(handle_process_winsize) {
        kd_error_t e = { 0 };
        _cleanup_json_ json_t *body = NULL;
        int r = request_json(req, false, &body, &e);
        if (r >= 0)
                r = schema_check(body, schema_winsize_request, "body", &e);
        if (r >= 0)
                r = manager_process_winsize(k->manager, SID, CID, PID, (unsigned) json_get_int(body, "Height", 0),
                                            (unsigned) json_get_int(body, "Width", 0), &e);
        return reply(req, r, &e, 204, NULL);
}

HANDLER(handle_not_implemented) {
        return respond_errorf(req, 501, "not_implemented", "%s %s is not implemented yet", req->method, req->url);
}
