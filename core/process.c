/* Process operations: exec, wait, signal and terminal size of processes inside containers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "manager-internal.h"
#include "schema.h"

/* Takes the sandbox's operation lock and finds the container and checks the process id. */
static int acquire(manager_t *m, const char *sid, const char *cid, const char *pid, kd_error_t *e,
                   sandbox_t **ret_sb, container_t **ret_c) {
        if (!id_is_valid(cid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid container id");
        if (pid && !id_is_valid(pid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid process id");
        sandbox_t *sb;
        int r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        container_t *c = sandbox_find_container(sb, cid);
        if (!c) {
                sandbox_release_ref(sb);
                return kd_error_set(e, -ENOENT, "container_not_found", "container \"%s\" not found in sandbox \"%s\"",
                                    cid, sid);
        }
        *ret_sb = sb;
        *ret_c = c;
        return 0;
}

static int must_be_running(sandbox_t *sb, container_t *c, const char *action, kd_error_t *e) {
        if (sb->state != VC_RUNNING)
                return kd_error_set(e, -EBUSY, "wrong_state", "cannot %s: sandbox \"%s\" is %s, not running", action,
                                    sb->id, vc_state_to_string(sb->state));
        if (c->state != VC_RUNNING)
                return kd_error_set(e, -EBUSY, "wrong_state", "cannot %s: container \"%s\" is %s, not running", action,
                                    c->id, vc_state_to_string(c->state));
        return sandbox_ensure_vm(sb, e);
}

/* The agent's name for a process: "" for the container's own. */
static const char *exec_id_of(container_t *c, const char *pid) {
        return streq(pid, c->id) ? "" : pid;
}

int manager_process_exec(manager_t *m, const char *sid, const char *cid, json_t *cmd, const kd_caller_t *who,
                         kd_error_t *e, json_t **ret_process) {
        int r = schema_check(cmd, schema_cmd, "Cmd", e);
        if (r < 0)
                return r;
        if (json_array_size(json_get_array(cmd, "Args")) == 0)
                return kd_error_set(e, -EINVAL, "invalid_field", "Cmd.Args: required, non-empty");
        sandbox_t *sb;
        container_t *c;
        r = acquire(m, sid, cid, NULL, e, &sb, &c);
        if (r < 0)
                return r;
        char token[ID_MAX + 1];
        _cleanup_json_ json_t *result = NULL;
        _cleanup_free_ char *msg = NULL;
        r = must_be_running(sb, c, "exec", e);
        if (r < 0)
                goto out;
        r = id_generate(token, sizeof token);
        if (r < 0) {
                r = kd_error_set(e, r, "internal", "cannot generate a process id");
                goto out;
        }
        r = agent_call(sb->agent, "ExecProcess",
                       json_pack("{s:s, s:s, s:O}", "ContainerID", cid, "ExecID", token, "Cmd", cmd), &result, &msg);
        if (r < 0) {
                r = agent_error(e, r, msg, cid);
                goto out;
        }
        const char *start = json_get_string(result, "StartTime");
        *ret_process = json_pack("{s:s, s:I, s:s}", "Token", token, "Pid", json_get_int(result, "Pid", 0), "StartTime",
                                 start ? start : "0001-01-01T00:00:00Z");
        emit_event(m, "process.exec", sid, cid, token, who, NULL);
out:
        sandbox_release_ref(sb);
        return r;
}

/* The stored exit status of a container's own process, for when the VM can no longer tell. */
static int stored_exit(sandbox_t *sb, container_t *c, const char *pid, int *ret_code) {
        if (!streq(pid, c->id))
                return -ENOENT;
        pthread_mutex_lock(&sb->mu);
        int r = c->exited ? 0 : -EAGAIN;
        if (r == 0)
                *ret_code = c->exit_code;
        pthread_mutex_unlock(&sb->mu);
        return r;
}

int manager_process_wait(manager_t *m, const char *sid, const char *cid, const char *pid, kd_error_t *e,
                         json_t **ret) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, pid, e, &sb, &c);
        if (r < 0)
                return r;
        int code;
        if (stored_exit(sb, c, pid, &code) == 0) {
                sandbox_release_ref(sb);
                *ret = json_pack("{s:i}", "ExitCode", code);
                return 0;
        }
        if (sb->state == VC_STOPPED) {
                sandbox_release_ref(sb);
                return kd_error_set(e, -ENOENT, "process_not_found",
                                    "process \"%s\" is gone: sandbox \"%s\" is stopped", pid, sid);
        }
        r = sandbox_ensure_vm(sb, e);
        agent_t *agent = NULL;
        if (r >= 0) {
                r = waiter_open(sb, &agent);
                if (r < 0)
                        r = kd_error_set(e, -ESHUTDOWN, "unavailable", "cannot reach the agent of sandbox \"%s\"", sid);
        }
        /* The wait itself does not hold the sandbox: other operations (a kill, say) go ahead. */
        sandbox_unlock(sb);
        if (r >= 0) {
                _cleanup_json_ json_t *result = NULL;
                _cleanup_free_ char *msg = NULL;
                r = agent_call(agent, "WaitProcess",
                               json_pack("{s:s, s:s}", "ContainerID", cid, "ExecID", exec_id_of(c, pid)), &result,
                               &msg);
                waiter_close(m, agent);
                if (r >= 0) {
                        int exit_code = (int) json_get_int(result, "ExitCode", -1);
                        /* Whoever learns of the exit first records it: a status read right after
                         * the wait must not show the container still running. */
                        if (streq(pid, cid))
                                container_record_exit(sb, cid, exit_code);
                        *ret = json_pack("{s:i}", "ExitCode", exit_code);
                }
                else if (stored_exit(sb, c, pid, &code) == 0) {
                        /* The VM went away (a sandbox stop) after the process had exited. */
                        *ret = json_pack("{s:i}", "ExitCode", code);
                        r = 0;
                } else
                        r = agent_error(e, r, msg, pid);
        }
        sandbox_put(sb);
        return r;
}

int manager_process_signal(manager_t *m, const char *sid, const char *cid, const char *pid, int signal, bool all,
                           const kd_caller_t *who, kd_error_t *e) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, pid, e, &sb, &c);
        if (r < 0)
                return r;
        _cleanup_free_ char *msg = NULL;
        r = sandbox_ensure_vm(sb, e);
        if (r >= 0 && sb->state != VC_RUNNING)
                r = kd_error_set(e, -EBUSY, "wrong_state", "cannot signal: sandbox \"%s\" is %s, not running", sid,
                                 vc_state_to_string(sb->state));
        if (r >= 0) {
                r = agent_call(sb->agent, "SignalProcess",
                               json_pack("{s:s, s:s, s:i, s:b}", "ContainerID", cid, "ExecID", exec_id_of(c, pid),
                                         "Signal", signal, "All", all),
                               NULL, &msg);
                if (r < 0)
                        r = agent_error(e, r, msg, pid);
        }
        if (r >= 0)
                emit_event(m, "process.signal", sid, cid, pid, who, json_pack("{s:i, s:b}", "Signal", signal, "All", all));
        sandbox_release_ref(sb);
        return r;
}

int manager_process_winsize(manager_t *m, const char *sid, const char *cid, const char *pid, unsigned height,
                            unsigned width, kd_error_t *e) {
        if (height > 65535 || width > 65535)
                return kd_error_set(e, -EINVAL, "invalid_field", "Height and Width must be at most 65535");
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, pid, e, &sb, &c);
        if (r < 0)
                return r;
        _cleanup_free_ char *msg = NULL;
        r = must_be_running(sb, c, "resize a terminal", e);
        if (r >= 0) {
                r = agent_call(sb->agent, "WinsizeProcess",
                               json_pack("{s:s, s:s, s:i, s:i}", "ContainerID", cid, "ExecID", exec_id_of(c, pid),
                                         "Height", height, "Width", width),
                               NULL, &msg);
                if (r < 0)
                        r = agent_error(e, r, msg, pid);
        }
        sandbox_release_ref(sb);
        return r;
}
