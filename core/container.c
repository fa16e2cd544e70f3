/* Container operations: the virtcontainers container state machine, carried out by the agent. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "manager-internal.h"
#include "schema.h"
#include "share.h"

#define KILL_WAIT_MS 10000

static int container_wrong_state(kd_error_t *e, sandbox_t *sb, container_t *c, const char *action,
                                 const char *needed) {
        return kd_error_set(e, -EBUSY, "wrong_state", "cannot %s container \"%s\": it is %s, not %s", action, c->id,
                            vc_state_to_string(c->state), needed);
}

static int sandbox_must_run(kd_error_t *e, sandbox_t *sb, const char *action) {
        if (sb->state == VC_RUNNING)
                return 0;
        return kd_error_set(e, -EBUSY, "wrong_state", "cannot %s: sandbox \"%s\" is %s, not running", action, sb->id,
                            vc_state_to_string(sb->state));
}

/* Persists c and emits an event; mu is taken here. */
static int commit_container(sandbox_t *sb, container_t *c, const char *event, const kd_caller_t *who, kd_error_t *e,
                            json_t *extra) {
        pthread_mutex_lock(&sb->mu);
        int r = persist_container(sb, c);
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                json_decref(extra);
                return kd_error_set(e, r, "internal", "cannot store container \"%s\"", c->id);
        }
        if (event)
                emit_event(sb->m, event, sb->id, c->id, NULL, who, extra);
        else
                json_decref(extra);
        return 0;
}

/* Calls the agent with params (consumed); on failure turns the agent's answer into e. */
static int call(sandbox_t *sb, const char *method, json_t *params, json_t **ret, kd_error_t *e, const char *what) {
        _cleanup_free_ char *msg = NULL;
        if (!params)
                return kd_error_set(e, -ENOMEM, "internal", "out of memory");
        int r = agent_call(sb->agent, method, params, ret, &msg);
        if (r < 0)
                return agent_error(e, r, msg, what);
        return 0;
}

/* Notes the stdio streams a CreateContainer result names and starts capturing them. */
static void container_take_streams(sandbox_t *sb, container_t *c, json_t *result) {
        json_t *streams = json_get_object(result, "Streams");
        json_int_t out = json_get_int(streams, "Stdout", 0), err = json_get_int(streams, "Stderr", 0);
        pthread_mutex_lock(&sb->mu);
        c->stdout_stream = out > 0 && out <= UINT32_MAX ? (uint32_t) out : 0;
        c->stderr_stream = err > 0 && err <= UINT32_MAX ? (uint32_t) err : 0;
        pthread_mutex_unlock(&sb->mu);
        log_sink_detach(TAKE_PTR(c->logs));
        container_attach_logs(sb, c);
}

int container_create_in_guest(sandbox_t *sb, container_t *c, kd_error_t *e) {
        int r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return r;
        const char *hostname = json_get_string(sb->config, "Hostname");
        char share[4096];
        _cleanup_json_ json_t *result = NULL;
        if (!sandbox_share_dir(sb, share, sizeof share)) {
                r = call(sb, "CreateContainer",
                         json_pack("{s:s, s:s, s:O, s:s}", "SandboxID", sb->id, "ContainerID", c->id, "Config",
                                   c->config, "Hostname", strempty(hostname) ? sb->id : hostname),
                         &result, e, c->id);
                if (r >= 0)
                        container_take_streams(sb, c, result);
                return r;
        }

        if (strempty(rootfs_path(c->config)))
                return kd_error_set(e, -EINVAL, "invalid_field", "container \"%s\" needs a RootFs on hypervisor %s",
                                    c->id, sb->hypervisor);
        _cleanup_json_ json_t *guest_config = NULL;
        _cleanup_free_ char *guest_rootfs = NULL;
        r = share_setup(share);
        if (r >= 0)
                r = share_container(share, c->id, c->config, &guest_config, &guest_rootfs);
        if (r < 0)
                return kd_error_set(e, r, r == -ENOENT || r == -ENOTDIR ? "invalid_field" : "internal",
                                    "cannot share the rootfs and mounts of container \"%s\" with the VM: %s", c->id,
                                    strerror(-r));
        r = call(sb, "CreateContainer",
                 json_pack("{s:s, s:s, s:O, s:s, s:s}", "SandboxID", sb->id, "ContainerID", c->id, "Config",
                           guest_config, "Rootfs", guest_rootfs, "Hostname", strempty(hostname) ? sb->id : hostname),
                 &result, e, c->id);
        if (r < 0)
                unshare_container(share, c->id);
        else
                container_take_streams(sb, c, result);
        return r;
}

void container_unshare(sandbox_t *sb, container_t *c) {
        char share[4096];
        if (sandbox_share_dir(sb, share, sizeof share))
                unshare_container(share, c->id);
}

int container_start_locked(sandbox_t *sb, container_t *c, const kd_caller_t *who, kd_error_t *e) {
        if (c->state == VC_RUNNING)
                return 0;
        if (c->state != VC_READY)
                return container_wrong_state(e, sb, c, "start", "ready");
        int r = sandbox_must_run(e, sb, "start a container");
        if (r < 0)
                return r;
        r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *result = NULL;
        r = call(sb, "StartContainer", json_pack("{s:s}", "ContainerID", c->id), &result, e, c->id);
        if (r < 0)
                return r;
        pthread_mutex_lock(&sb->mu);
        /* The process may already have exited and been recorded by the event worker. */
        if (c->state == VC_READY) {
                c->state = VC_RUNNING;
                c->pid = (int) json_get_int(result, "Pid", 0);
                const char *st = json_get_string(result, "StartTime");
                if (!st || parse_rfc3339(st, &c->start_ns) < 0)
                        c->start_ns = now_realtime_ns();
        }
        pthread_mutex_unlock(&sb->mu);
        return commit_container(sb, c, "container.start", who, e, NULL);
}

static int wait_exit(sandbox_t *sb, container_t *c, long timeout_ms, int *ret_code, kd_error_t *e) {
        _cleanup_json_ json_t *result = NULL;
        int r = call(sb, "WaitProcess", json_pack("{s:s, s:s, s:I}", "ContainerID", c->id, "ExecID", "", "TimeoutMs",
                                                   (json_int_t) timeout_ms),
                     &result, e, c->id);
        if (r < 0)
                return r;
        *ret_code = (int) json_get_int(result, "ExitCode", -1);
        return 0;
}

/* First half of a stop: thaw and signal. Returns 1 when the container's process must now be waited
 * for, 0 when the container is stopped already (or never ran). */
static int stop_begin(sandbox_t *sb, container_t *c, bool force, const kd_caller_t *who, kd_error_t *e) {
        if (c->state == VC_STOPPED)
                return 0;
        if (c->state == VC_READY) {
                /* Never started: nothing runs, only the state changes. */
                pthread_mutex_lock(&sb->mu);
                c->state = VC_STOPPED;
                pthread_mutex_unlock(&sb->mu);
                int r = commit_container(sb, c, "container.stop", who, e, NULL);
                return r < 0 ? r : 0;
        }
        int r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return r;
        if (c->state == VC_PAUSED) {
                /* A frozen process cannot act on SIGTERM: thaw it first. */
                r = call(sb, "ResumeContainer", json_pack("{s:s}", "ContainerID", c->id), NULL, e, c->id);
                if (r < 0 && e->status != 409)
                        return r;
        }
        kd_error_t ignored;
        call(sb, "SignalProcess",
             json_pack("{s:s, s:s, s:i, s:b}", "ContainerID", c->id, "ExecID", "", "Signal", force ? SIGKILL : SIGTERM,
                       "All", 1),
             NULL, &ignored, c->id);
        return 1;
}

/* Second half: waits for the exit until deadline (monotonic ns), then SIGKILLs, and records it. */
static int stop_finish(sandbox_t *sb, container_t *c, bool force, int64_t deadline_ns, const kd_caller_t *who,
                       kd_error_t *e) {
        int code = 128 + SIGKILL;
        int64_t left_ms = (deadline_ns - now_monotonic_ns()) / 1000000;
        int r = wait_exit(sb, c, force ? KILL_WAIT_MS : (left_ms > 0 ? left_ms : 0), &code, e);
        if (r < 0 && !force) {
                log_info("Container %s/%s did not stop in time, killing it", sb->id, c->id);
                kd_error_t ignored;
                call(sb, "SignalProcess",
                     json_pack("{s:s, s:s, s:i, s:b}", "ContainerID", c->id, "ExecID", "", "Signal", SIGKILL, "All", 1),
                     NULL, &ignored, c->id);
                r = wait_exit(sb, c, KILL_WAIT_MS, &code, e);
        }
        if (r < 0)
                return r;
        pthread_mutex_lock(&sb->mu);
        c->state = VC_STOPPED;
        c->paused_by_sandbox = false;
        c->exited = true;
        c->exit_code = code;
        pthread_mutex_unlock(&sb->mu);
        return commit_container(sb, c, "container.stop", who, e, json_pack("{s:i}", "ExitCode", code));
}

static int64_t stop_deadline(sandbox_t *sb, int timeout_sec) {
        if (timeout_sec < 0)
                timeout_sec = (int) sb->m->stop_timeout_sec;
        return now_monotonic_ns() + (int64_t) timeout_sec * 1000000000LL;
}

int container_stop_locked(sandbox_t *sb, container_t *c, bool force, int timeout_sec, const kd_caller_t *who,
                          kd_error_t *e) {
        int64_t deadline = stop_deadline(sb, timeout_sec);
        int r = stop_begin(sb, c, force, who, e);
        return r <= 0 ? r : stop_finish(sb, c, force, deadline, who, e);
}

int containers_stop_all_locked(sandbox_t *sb, bool force, int timeout_sec, const kd_caller_t *who) {
        /* Every container gets its signal first and they share one grace period, as with docker
         * stop of several containers: a sandbox stop takes the timeout once, not once each. */
        int64_t deadline = stop_deadline(sb, timeout_sec);
        bool *pending = calloc(sb->n_containers ? sb->n_containers : 1, sizeof *pending);
        if (!pending)
                return -ENOMEM;
        kd_error_t e;
        int failures = 0;
        for (size_t i = 0; i < sb->n_containers; i++) {
                int r = stop_begin(sb, sb->containers[i], force, who, &e);
                if (r < 0) {
                        log_warning("Stopping container %s/%s: %s", sb->id, sb->containers[i]->id, e.message);
                        failures++;
                }
                pending[i] = r > 0;
        }
        for (size_t i = 0; i < sb->n_containers; i++)
                if (pending[i] && stop_finish(sb, sb->containers[i], force, deadline, who, &e) < 0) {
                        log_warning("Stopping container %s/%s: %s", sb->id, sb->containers[i]->id, e.message);
                        failures++;
                }
        free(pending);
        return failures ? -EIO : 0;
}

static int find(sandbox_t *sb, const char *cid, kd_error_t *e, container_t **ret) {
        if (!id_is_valid(cid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid container id");
        container_t *c = sandbox_find_container(sb, cid);
        if (!c)
                return kd_error_set(e, -ENOENT, "container_not_found", "container \"%s\" not found in sandbox \"%s\"",
                                    cid, sb->id);
        *ret = c;
        return 0;
}

/* Looks up the sandbox (taking its operation lock) and the container. */
static int acquire(manager_t *m, const char *sid, const char *cid, kd_error_t *e, sandbox_t **ret_sb,
                   container_t **ret_c) {
        if (!id_is_valid(cid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid container id");
        sandbox_t *sb;
        int r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        r = find(sb, cid, e, ret_c);
        if (r < 0) {
                sandbox_release_ref(sb);
                return r;
        }
        *ret_sb = sb;
        return 0;
}

static json_t *status_of(sandbox_t *sb, container_t *c) {
        pthread_mutex_lock(&sb->mu);
        json_t *j = container_status_json(c);
        pthread_mutex_unlock(&sb->mu);
        return j;
}

int manager_container_list(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_list) {
        sandbox_t *sb;
        int r = sandbox_read_begin(m, sid, e, &sb);
        if (r < 0)
                return r;
        json_t *list = json_array();
        for (size_t i = 0; list && i < sb->n_containers; i++)
                json_array_append_new(list, container_status_json(sb->containers[i]));
        sandbox_read_end(sb);
        if (!list)
                return kd_error_set(e, -ENOMEM, "internal", "out of memory");
        *ret_list = list;
        return 0;
}

int manager_container_status(manager_t *m, const char *sid, const char *cid, kd_error_t *e, json_t **ret_status) {
        if (!id_is_valid(cid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid container id");
        sandbox_t *sb;
        int r = sandbox_read_begin(m, sid, e, &sb);
        if (r < 0)
                return r;
        container_t *c = sandbox_find_container(sb, cid);
        if (c)
                *ret_status = container_status_json(c);
        else
                r = kd_error_set(e, -ENOENT, "container_not_found", "container \"%s\" not found in sandbox \"%s\"", cid,
                                 sid);
        sandbox_read_end(sb);
        return r;
}

int manager_container_create(manager_t *m, const char *sid, json_t *config, const kd_caller_t *who, kd_error_t *e,
                             json_t **ret_status) {
        int r = container_config_check(config, "ContainerConfig", e);
        if (r < 0)
                return r;
        sandbox_t *sb;
        r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        container_t *c = NULL;
        const char *cid = json_get_string(config, "ID");
        if (sb->state != VC_READY && sb->state != VC_RUNNING) {
                r = kd_error_set(e, -EBUSY, "wrong_state",
                                 "cannot create a container: sandbox \"%s\" is %s, not ready or running", sid,
                                 vc_state_to_string(sb->state));
                goto out;
        }
        if (sandbox_find_container(sb, cid)) {
                r = kd_error_set(e, -EEXIST, "already_exists", "container \"%s\" already exists in sandbox \"%s\"", cid,
                                 sid);
                goto out;
        }
        r = container_new(config, sb->next_index, &c);
        if (r < 0) {
                r = kd_error_set(e, r, "internal", "out of memory");
                goto out;
        }
        r = container_create_in_guest(sb, c, e);
        if (r < 0)
                goto out;
        pthread_mutex_lock(&sb->mu);
        container_t **n = realloc(sb->containers, (sb->n_containers + 1) * sizeof *n);
        if (n) {
                sb->containers = n;
                sb->containers[sb->n_containers++] = c;
                sb->next_index++;
                r = store_begin(m->store);
                if (r >= 0) {
                        r = persist_container(sb, c);
                        if (r >= 0)
                                r = persist_sandbox(sb);
                        if (r >= 0)
                                r = store_commit(m->store);
                        else
                                store_rollback(m->store);
                }
                if (r < 0) {
                        sb->n_containers--;
                        sb->next_index--;
                }
        } else
                r = -ENOMEM;
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                kd_error_t ignored;
                call(sb, "RemoveContainer", json_pack("{s:s}", "ContainerID", c->id), NULL, &ignored, c->id);
                r = kd_error_set(e, r, "internal", "cannot store container \"%s\"", cid);
                goto out;
        }
        *ret_status = status_of(sb, c);
        emit_event(m, "container.create", sid, c->id, NULL, who, NULL);
        c = NULL;
out:
        container_free(c);
        sandbox_release_ref(sb);
        return r;
}

int manager_container_action(manager_t *m, const char *sid, const char *cid, container_action_t action,
                             const action_options_t *opts, const kd_caller_t *who, kd_error_t *e,
                             json_t **ret_status) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        switch (action) {
        case CONTAINER_START:
                r = container_start_locked(sb, c, who, e);
                break;
        case CONTAINER_STOP:
                if (c->state == VC_STOPPED)
                        r = 0;
                else if (sb->state == VC_PAUSED)
                        r = kd_error_set(e, -EBUSY, "wrong_state",
                                         "cannot stop container \"%s\": sandbox \"%s\" is paused, not running", cid,
                                         sid);
                else
                        r = container_stop_locked(sb, c, opts && opts->force, opts ? opts->timeout_sec : -1, who, e);
                break;
        case CONTAINER_PAUSE:
        case CONTAINER_RESUME: {
                bool pause = action == CONTAINER_PAUSE;
                vc_state_t target = pause ? VC_PAUSED : VC_RUNNING;
                if (c->state == target) {
                        r = 0;
                        break;
                }
                if (c->state != (pause ? VC_RUNNING : VC_PAUSED)) {
                        r = container_wrong_state(e, sb, c, pause ? "pause" : "resume", pause ? "running" : "paused");
                        break;
                }
                r = sandbox_must_run(e, sb, pause ? "pause a container" : "resume a container");
                if (r < 0)
                        break;
                r = sandbox_ensure_vm(sb, e);
                if (r < 0)
                        break;
                r = call(sb, pause ? "PauseContainer" : "ResumeContainer", json_pack("{s:s}", "ContainerID", c->id),
                         NULL, e, c->id);
                if (r < 0)
                        break;
                pthread_mutex_lock(&sb->mu);
                if (c->state != VC_STOPPED)
                        c->state = target;
                pthread_mutex_unlock(&sb->mu);
                r = commit_container(sb, c, pause ? "container.pause" : "container.resume", who, e, NULL);
                break;
        }
        default:
                r = kd_error_set(e, -EINVAL, "bad_request", "unknown action");
        }
        if (r >= 0 && ret_status)
                *ret_status = status_of(sb, c);
        sandbox_release_ref(sb);
        return r;
}

int manager_container_delete(manager_t *m, const char *sid, const char *cid, bool force, const kd_caller_t *who,
                             kd_error_t *e) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        if (c->state == VC_RUNNING || c->state == VC_PAUSED) {
                if (!force) {
                        r = kd_error_set(e, -EBUSY, "wrong_state",
                                         "cannot delete container \"%s\": it is %s, not ready or stopped; stop it "
                                         "first or delete with force=true",
                                         cid,
                                         vc_state_to_string(c->state));
                        goto out;
                }
                if (sb->state == VC_PAUSED) {
                        r = kd_error_set(e, -EBUSY, "wrong_state",
                                         "cannot delete container \"%s\": sandbox \"%s\" is paused, not running", cid,
                                         sid);
                        goto out;
                }
                r = container_stop_locked(sb, c, true, 0, who, e);
                if (r < 0)
                        goto out;
        }
        if (sb->vm_handle && sb->state != VC_STOPPED && sb->state != VC_PAUSED) {
                r = sandbox_ensure_vm(sb, e);
                if (r < 0)
                        goto out;
                r = call(sb, "RemoveContainer", json_pack("{s:s}", "ContainerID", c->id), NULL, e, c->id);
                if (r < 0 && e->status != 404)
                        goto out;
        }
        container_unshare(sb, c);
        log_sink_detach(TAKE_PTR(c->logs));
        char log_file[4096];
        logs_path(m->run_dir, sid, cid, log_file, sizeof log_file);
        unlink(log_file);
        pthread_mutex_lock(&sb->mu);
        r = unpersist_container(sb, c);
        if (r >= 0) {
                for (size_t i = 0; i < sb->n_containers; i++)
                        if (sb->containers[i] == c) {
                                sb->containers[i] = sb->containers[--sb->n_containers];
                                break;
                        }
                /* Keep creation order for the ones left. */
                for (size_t i = 1; i < sb->n_containers; i++)
                        for (size_t k = i; k > 0 && sb->containers[k - 1]->index > sb->containers[k]->index; k--) {
                                container_t *t = sb->containers[k];
                                sb->containers[k] = sb->containers[k - 1];
                                sb->containers[k - 1] = t;
                        }
        }
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                r = kd_error_set(e, r, "internal", "cannot delete the record of container \"%s\"", cid);
                goto out;
        }
        container_free(c);
        emit_event(m, "container.delete", sid, cid, NULL, who, NULL);
        r = 0;
out:
        sandbox_release_ref(sb);
        return r;
}

int manager_container_kill(manager_t *m, const char *sid, const char *cid, int signal, bool all,
                           const kd_caller_t *who, kd_error_t *e) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        if (c->state != VC_RUNNING && c->state != VC_PAUSED)
                r = container_wrong_state(e, sb, c, "signal", "running or paused");
        else if (sb->state != VC_RUNNING)
                r = sandbox_must_run(e, sb, "signal a container");
        else
                r = sandbox_ensure_vm(sb, e);
        if (r >= 0)
                r = call(sb, "SignalProcess",
                         json_pack("{s:s, s:s, s:i, s:b}", "ContainerID", cid, "ExecID", "", "Signal", signal, "All", all),
                         NULL, e, cid);
        if (r >= 0)
                emit_event(m, "container.kill", sid, cid, NULL, who, json_pack("{s:i, s:b}", "Signal", signal, "All", all));
        sandbox_release_ref(sb);
        return r;
}

int manager_container_stats(manager_t *m, const char *sid, const char *cid, kd_error_t *e, json_t **ret_stats) {
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        if (sb->state == VC_STOPPED || sb->state == VC_PAUSED)
                r = kd_error_set(e, -EBUSY, "wrong_state",
                                 "cannot collect stats: sandbox \"%s\" is %s, not ready or running", sid,
                                 vc_state_to_string(sb->state));
        else
                r = sandbox_ensure_vm(sb, e);
        if (r >= 0)
                r = call(sb, "StatsContainer", json_pack("{s:s}", "ContainerID", cid), ret_stats, e, cid);
        sandbox_release_ref(sb);
        return r;
}

/* Removes null members recursively: in a request, null means absent. */
static void strip_nulls(json_t *j) {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(j, tmp, k, v) {
                if (json_is_null(v))
                        json_object_del(j, k);
                else if (json_is_object(v))
                        strip_nulls(v);
        }
}

int manager_container_update(manager_t *m, const char *sid, const char *cid, json_t *resources,
                             const kd_caller_t *who, kd_error_t *e, json_t **ret) {
        int r = schema_check(resources, schema_linux_resources, "LinuxResources", e);
        if (r < 0)
                return r;
        strip_nulls(resources);
        sandbox_t *sb;
        container_t *c;
        r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        if (c->state == VC_STOPPED)
                r = container_wrong_state(e, sb, c, "update", "ready, running or paused");
        else if (sb->state != VC_RUNNING && sb->state != VC_READY)
                r = kd_error_set(e, -EBUSY, "wrong_state",
                                 "cannot update container \"%s\": sandbox \"%s\" is %s, not ready or running", cid, sid,
                                 vc_state_to_string(sb->state));
        else
                r = sandbox_ensure_vm(sb, e);
        if (r >= 0)
                r = call(sb, "UpdateContainer", json_pack("{s:s, s:O}", "ContainerID", cid, "Resources", resources),
                         NULL, e, cid);
        if (r >= 0) {
                pthread_mutex_lock(&sb->mu);
                if (!c->resources)
                        c->resources = json_object();
                json_object_update_recursive(c->resources, resources);
                pthread_mutex_unlock(&sb->mu);
                r = commit_container(sb, c, "container.update", who, e, NULL);
        }
        if (r >= 0) {
                pthread_mutex_lock(&sb->mu);
                *ret = json_pack("{s:s, s:O}", "ID", cid, "Resources", c->resources);
                pthread_mutex_unlock(&sb->mu);
        }
        sandbox_release_ref(sb);
        return r;
}

int manager_container_ps(manager_t *m, const char *sid, const char *cid, const char *format, json_t *args,
                         kd_error_t *e, json_t **ret) {
        if (!format)
                format = "json";
        if (!streq(format, "json") && !streq(format, "table"))
                return kd_error_set(e, -EINVAL, "invalid_query", "format must be json or table");
        sandbox_t *sb;
        container_t *c;
        int r = acquire(m, sid, cid, e, &sb, &c);
        if (r < 0)
                return r;
        if (c->state != VC_RUNNING && c->state != VC_PAUSED)
                r = container_wrong_state(e, sb, c, "list the processes of", "running or paused");
        else if (sb->state != VC_RUNNING)
                r = sandbox_must_run(e, sb, "list processes");
        else
                r = sandbox_ensure_vm(sb, e);
        if (r >= 0)
                r = call(sb, "ListProcesses",
                         json_pack("{s:s, s:s, s:o}", "ContainerID", cid, "Format", format, "Args",
                                   args ? json_incref(args) : json_array()),
                         ret, e, cid);
        sandbox_release_ref(sb);
        return r;
}

int manager_container_logs(manager_t *m, const char *sid, const char *cid, kd_error_t *e, char **ret_data,
                           size_t *ret_len) {
        if (!id_is_valid(cid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid container id");
        sandbox_t *sb;
        int r = sandbox_read_begin(m, sid, e, &sb);
        if (r < 0)
                return r;
        bool known = sandbox_find_container(sb, cid) != NULL;
        sandbox_read_end(sb);
        if (!known)
                return kd_error_set(e, -ENOENT, "container_not_found", "container \"%s\" not found in sandbox \"%s\"",
                                    cid, sid);
        char path[4096];
        logs_path(m->run_dir, sid, cid, path, sizeof path);
        r = read_file(path, LOGS_MAX_BYTES, ret_data, ret_len);
        if (r == -ENOENT) {
                *ret_data = strdup("");
                *ret_len = 0;
                r = *ret_data ? 0 : -ENOMEM;
        }
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot read the log of container \"%s\": %s", cid, strerror(-r));
        return 0;
}
