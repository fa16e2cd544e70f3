/* The agent's RPC layer: request parsing, the method table and parameter checks (see rpc.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "rpc.h"
#include "session.h"
#include "util.h"

struct rpc_call {
        session_t *session;
        uint64_t generation;
        uint32_t id;
        char method[32];
};

void rpc_reply(rpc_call_t *call, json_t *result) {
        if (!result)
                result = json_object();
        json_t *payload = result ? json_pack("{s:o}", "Result", result) : NULL;
        if (!payload)
                log_error("Out of memory answering %s", call->method);
        else
                session_send_response(call->session, call->generation, call->id, payload);
        json_decref(payload);
        free(call);
}

int rpc_fail(rpc_call_t *call, int r, const char *fmt, ...) {
        char message[512];
        va_list ap;
        va_start(ap, fmt);
        errno = r < 0 ? -r : r; /* %m names the error being answered */
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = -EIO;
        log_debug("%s failed: %s (%s)", call->method, message, strerror(-r));
        _cleanup_json_ json_t *payload = json_pack("{s:{s:i, s:s}}", "Error", "Errno", -r, "Message", message);
        if (payload)
                session_send_response(call->session, call->generation, call->id, payload);
        free(call);
        return r;
}

bool rpc_call_is_stale(const rpc_call_t *call) {
        return call->generation != session_generation(call->session) || !session_is_connected(call->session);
}

const char *rpc_call_method(const rpc_call_t *call) {
        return call->method;
}

/* ---- parameter helpers: each fails the call itself and returns a negative errno ---- */

static int get_container_id(rpc_call_t *call, json_t *params, const char **ret) {
        json_t *v = json_object_get(params, "ContainerID");
        if (!json_is_string(v))
                return rpc_fail(call, -EINVAL, "ContainerID is required");
        const char *cid = json_string_value(v);
        if (!id_is_valid(cid) || strlen(cid) != json_string_length(v))
                return rpc_fail(call, -EINVAL, "ContainerID must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
        *ret = cid;
        return 0;
}

/* ExecID: absent, null or "" name the container's own process. */
static int get_exec_id(rpc_call_t *call, json_t *params, bool required, const char **ret) {
        json_t *v = json_object_get(params, "ExecID");
        if (!v || json_is_null(v)) {
                if (required)
                        return rpc_fail(call, -EINVAL, "ExecID and Cmd.Args are required");
                *ret = "";
                return 0;
        }
        if (!json_is_string(v))
                return rpc_fail(call, -EINVAL, "ExecID must be a string");
        const char *id = json_string_value(v);
        if ((*id || required) && (!id_is_valid(id) || strlen(id) != json_string_length(v)))
                return rpc_fail(call, -EINVAL, "ExecID must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
        *ret = id;
        return 0;
}

static int get_optional_int(rpc_call_t *call, json_t *params, const char *key, int64_t min, int64_t max, int64_t def,
                            int64_t *ret) {
        json_t *v = json_object_get(params, key);
        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return rpc_fail(call, -EINVAL, "%s must be an integer in [%lld, %lld]", key, (long long) min,
                                (long long) max);
        *ret = json_integer_value(v);
        return 0;
}

static int get_optional_bool(rpc_call_t *call, json_t *params, const char *key, bool *ret) {
        json_t *v = json_object_get(params, key);
        if (!v || json_is_null(v)) {
                *ret = false;
                return 0;
        }
        if (!json_is_boolean(v))
                return rpc_fail(call, -EINVAL, "%s must be a boolean", key);
        *ret = json_is_true(v);
        return 0;
}

/* ---- the methods ---- */

typedef struct request {
        rpc_call_t *call;
        json_t *params;
        const guest_ops_t *ops;
        void *ud;
} request_t;

static void m_ping(request_t *q) {
        rpc_reply(q->call, json_pack("{s:i, s:s}", "Version", AGENT_PROTOCOL_VERSION, "Agent", AGENT_VERSION_STRING));
}

static void m_create_container(request_t *q) {
        char error[SPEC_ERROR_MAX] = "";
        container_spec_t *spec;
        int r = spec_parse_container(q->params, &spec, error);
        if (r < 0) {
                rpc_fail(q->call, r, "%s", *error ? error : "cannot parse the container configuration");
                return;
        }
        q->ops->create_container(q->ud, q->call, spec);
}

static void m_start_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) < 0)
                return;
        q->ops->start_container(q->ud, q->call, cid);
}

static void m_exec_process(request_t *q) {
        const char *cid, *exec_id;
        if (get_container_id(q->call, q->params, &cid) < 0 || get_exec_id(q->call, q->params, true, &exec_id) < 0)
                return;
        char error[SPEC_ERROR_MAX] = "";
        process_spec_t spec;
        json_t *cmd = json_object_get(q->params, "Cmd");
        int r = cmd ? spec_parse_process(cmd, &spec, error)
                    : (snprintf(error, sizeof error, "Cmd is required"), -EINVAL);
        if (r < 0) {
                rpc_fail(q->call, r, "%s", *error ? error : "cannot parse Cmd");
                return;
        }
        process_spec_t *owned = malloc(sizeof *owned);
        if (!owned) {
                process_spec_done(&spec);
                rpc_fail(q->call, -ENOMEM, "out of memory");
                return;
        }
        *owned = spec;
        q->ops->exec_process(q->ud, q->call, cid, exec_id, owned);
}

static void m_wait_process(request_t *q) {
        const char *cid, *exec_id;
        int64_t timeout;
        if (get_container_id(q->call, q->params, &cid) < 0 || get_exec_id(q->call, q->params, false, &exec_id) < 0 ||
            get_optional_int(q->call, q->params, "TimeoutMs", INT64_MIN, INT64_MAX, -1, &timeout) < 0)
                return;
        q->ops->wait_process(q->ud, q->call, cid, exec_id, timeout < 0 ? -1 : timeout);
}

static void m_signal_process(request_t *q) {
        const char *cid, *exec_id;
        bool all = false;
        if (get_container_id(q->call, q->params, &cid) < 0 || get_exec_id(q->call, q->params, false, &exec_id) < 0 ||
            get_optional_bool(q->call, q->params, "All", &all) < 0)
                return;
        json_t *v = json_object_get(q->params, "Signal");
        int sig = -EINVAL;
        if (json_is_integer(v))
                sig = json_integer_value(v) >= 1 && json_integer_value(v) <= 64 ? (int) json_integer_value(v) : -EINVAL;
        else if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v))
                sig = signal_from_string(json_string_value(v));
        if (sig <= 0 || sig > 64) {
                rpc_fail(q->call, -EINVAL, "invalid signal");
                return;
        }
        q->ops->signal_process(q->ud, q->call, cid, exec_id, sig, all);
}

static void m_winsize_process(request_t *q) {
        const char *cid, *exec_id;
        int64_t height, width;
        if (get_container_id(q->call, q->params, &cid) < 0 || get_exec_id(q->call, q->params, false, &exec_id) < 0 ||
            get_optional_int(q->call, q->params, "Height", 0, 65535, 0, &height) < 0 ||
            get_optional_int(q->call, q->params, "Width", 0, 65535, 0, &width) < 0)
                return;
        q->ops->winsize_process(q->ud, q->call, cid, exec_id, (unsigned) height, (unsigned) width);
}

static void m_pause_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) >= 0)
                q->ops->pause_container(q->ud, q->call, cid, true);
}

static void m_resume_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) >= 0)
                q->ops->pause_container(q->ud, q->call, cid, false);
}

static void m_stats_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) >= 0)
                q->ops->stats_container(q->ud, q->call, cid);
}

static void m_update_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) < 0)
                return;
        json_t *res = json_object_get(q->params, "Resources");
        if (!json_is_object(res)) {
                rpc_fail(q->call, -EINVAL, "Resources is required");
                return;
        }
        char error[SPEC_ERROR_MAX] = "";
        resources_spec_t *spec = calloc(1, sizeof *spec);
        if (!spec) {
                rpc_fail(q->call, -ENOMEM, "out of memory");
                return;
        }
        int r = spec_parse_resources(res, spec, error);
        if (r < 0) {
                free(spec);
                rpc_fail(q->call, r, "%s", *error ? error : "cannot parse Resources");
                return;
        }
        q->ops->update_container(q->ud, q->call, cid, spec);
}

static void m_list_processes(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) < 0)
                return;
        char error[SPEC_ERROR_MAX] = "";
        ps_spec_t ps;
        int r = spec_parse_ps(json_object_get(q->params, "Format"), json_object_get(q->params, "Args"), &ps, error);
        if (r < 0) {
                rpc_fail(q->call, r, "%s", error);
                return;
        }
        q->ops->list_processes(q->ud, q->call, cid, &ps);
}

static void m_remove_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) >= 0)
                q->ops->remove_container(q->ud, q->call, cid);
}

static void m_status_container(request_t *q) {
        const char *cid;
        if (get_container_id(q->call, q->params, &cid) >= 0)
                q->ops->status_container(q->ud, q->call, cid);
}

static void m_list_containers(request_t *q) {
        q->ops->list_containers(q->ud, q->call);
}

static void m_shutdown(request_t *q) {
        q->ops->shutdown(q->ud, q->call);
}

static const struct {
        const char *name;
        void (*fn)(request_t *q);
} methods[] = {
        { "Ping", m_ping },
        { "CreateContainer", m_create_container },
        { "StartContainer", m_start_container },
        { "ExecProcess", m_exec_process },
        { "WaitProcess", m_wait_process },
        { "SignalProcess", m_signal_process },
        { "WinsizeProcess", m_winsize_process },
        { "PauseContainer", m_pause_container },
        { "ResumeContainer", m_resume_container },
        { "StatsContainer", m_stats_container },
        { "UpdateContainer", m_update_container },
        { "ListProcesses", m_list_processes },
        { "RemoveContainer", m_remove_container },
        { "StatusContainer", m_status_container },
        { "ListContainers", m_list_containers },
        { "Shutdown", m_shutdown },
};

void rpc_dispatch(session_t *s, const guest_ops_t *ops, void *ud, uint32_t id, const uint8_t *payload, size_t len) {
        rpc_call_t *call = calloc(1, sizeof *call);
        if (!call) {
                log_error("Out of memory for request %u", id);
                return;
        }
        *call = (rpc_call_t){ .session = s, .generation = session_generation(s), .id = id };
        snprintf(call->method, sizeof call->method, "request");

        json_error_t jerr;
        _cleanup_json_ json_t *req = json_loadb((const char *) payload, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(req)) {
                rpc_fail(call, -EINVAL, "the request is not a JSON object: %s", req ? "wrong type" : jerr.text);
                return;
        }
        json_t *jm = json_object_get(req, "Method");
        const char *method = json_string_value(jm);
        if (!method || strlen(method) != json_string_length(jm)) {
                rpc_fail(call, -EINVAL, "Method must be a string");
                return;
        }
        json_t *params = json_object_get(req, "Params");
        _cleanup_json_ json_t *empty = NULL;
        if (!params || json_is_null(params))
                params = empty = json_object();
        if (!json_is_object(params)) {
                rpc_fail(call, -EINVAL, "Params must be an object");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (streq(method, methods[i].name)) {
                        snprintf(call->method, sizeof call->method, "%s", methods[i].name);
                        log_debug("Request %u: %s", id, methods[i].name);
                        request_t q = { .call = call, .params = params, .ops = ops, .ud = ud };
                        methods[i].fn(&q);
                        return;
                }
        rpc_fail(call, -EOPNOTSUPP, "unknown method %.64s", method);
}
