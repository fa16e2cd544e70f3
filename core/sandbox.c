/* Sandbox operations: the virtcontainers sandbox state machine on top of a VM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "manager-internal.h"
#include "schema.h"
#include "share.h"

static int persist_everything(sandbox_t *sb) {
        store_t *s = sb->m->store;
        int r = store_begin(s);
        if (r < 0)
                return r;
        r = persist_sandbox(sb);
        for (size_t i = 0; i < sb->n_containers && r >= 0; i++)
                r = persist_container(sb, sb->containers[i]);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        return store_commit(s);
}

static int set_state(sandbox_t *sb, vc_state_t state, kd_error_t *e) {
        pthread_mutex_lock(&sb->mu);
        sb->state = state;
        int r = persist_everything(sb);
        pthread_mutex_unlock(&sb->mu);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot store the state of sandbox \"%s\"", sb->id);
        return 0;
}

static int wrong_state(kd_error_t *e, sandbox_t *sb, const char *action, const char *needed) {
        return kd_error_set(e, -EBUSY, "wrong_state", "cannot %s sandbox \"%s\": it is %s, not %s", action, sb->id,
                            vc_state_to_string(sb->state), needed);
}

int manager_sandbox_start_locked(sandbox_t *sb, const kd_caller_t *who, kd_error_t *e) {
        int r;
        switch (sb->state) {
        case VC_RUNNING:
                return 0;
        case VC_PAUSED:
                return kd_error_set(e, -EBUSY, "wrong_state",
                                    "cannot start sandbox \"%s\": it is paused, not ready or stopped; resume it instead",
                                    sb->id);
        case VC_STOPPED:
                /* A stopped sandbox has no VM: boot a new one and create the containers again. */
                r = sandbox_boot_vm(sb, e);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < sb->n_containers; i++) {
                        container_t *c = sb->containers[i];
                        pthread_mutex_lock(&sb->mu);
                        c->state = VC_READY;
                        c->pid = 0;
                        c->start_ns = 0;
                        c->exited = false;
                        c->exit_code = 0;
                        c->stdout_stream = c->stderr_stream = 0;
                        pthread_mutex_unlock(&sb->mu);
                        r = container_create_in_guest(sb, c, e);
                        if (r < 0)
                                return r;
                }
                break;
        case VC_READY:
                r = sandbox_ensure_vm(sb, e);
                if (r < 0)
                        return r;
                break;
        default:
                return wrong_state(e, sb, "start", "ready or stopped");
        }
        r = set_state(sb, VC_RUNNING, e);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sb->n_containers; i++)
                if (sb->containers[i]->state == VC_READY) {
                        r = container_start_locked(sb, sb->containers[i], who, e);
                        if (r < 0)
                                return r;
                }
        emit_event(sb->m, "sandbox.start", sb->id, NULL, NULL, who, NULL);
        return 0;
}

static int sandbox_stop_locked(sandbox_t *sb, bool force, int timeout_sec, const kd_caller_t *who, kd_error_t *e) {
        if (sb->state == VC_STOPPED)
                return 0;
        int r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return sb->state == VC_STOPPED ? 0 : r; /* a vanished VM leaves the sandbox stopped */
        if (sb->state == VC_PAUSED) {
                r = vm_resume(sb->vm);
                if (r < 0)
                        return kd_error_set(e, r, "internal", "cannot resume the VM of sandbox \"%s\" to stop it",
                                            sb->id);
                pthread_mutex_lock(&sb->mu);
                sb->state = VC_RUNNING;
                for (size_t i = 0; i < sb->n_containers; i++)
                        if (sb->containers[i]->paused_by_sandbox) {
                                sb->containers[i]->state = VC_RUNNING;
                                sb->containers[i]->paused_by_sandbox = false;
                        }
                pthread_mutex_unlock(&sb->mu);
        }
        /* Containers that do not stop cleanly go down with the VM. */
        containers_stop_all_locked(sb, force, timeout_sec, who);
        sandbox_close_agent(sb);
        r = vm_stop(TAKE_PTR(sb->vm), force);
        if (r < 0)
                log_warning_errno(r, "Stopping the VM of sandbox %s: %m", sb->id);
        char share[4096];
        if (sandbox_share_dir(sb, share, sizeof share) && (r = share_teardown(share)) < 0)
                log_warning_errno(r, "Removing the share of sandbox %s: %m", sb->id);
        pthread_mutex_lock(&sb->mu);
        json_decref(TAKE_PTR(sb->vm_handle));
        for (size_t i = 0; i < sb->n_containers; i++) {
                container_t *c = sb->containers[i];
                c->state = VC_STOPPED;
                c->paused_by_sandbox = false;
        }
        pthread_mutex_unlock(&sb->mu);
        r = set_state(sb, VC_STOPPED, e);
        if (r < 0)
                return r;
        emit_event(sb->m, "sandbox.stop", sb->id, NULL, NULL, who, NULL);
        return 0;
}

static int sandbox_pause_locked(sandbox_t *sb, const kd_caller_t *who, kd_error_t *e) {
        if (sb->state == VC_PAUSED)
                return 0;
        if (sb->state != VC_RUNNING)
                return wrong_state(e, sb, "pause", "running");
        int r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return r;
        r = vm_pause(sb->vm);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot pause the VM of sandbox \"%s\": %s", sb->id,
                                    strerror(-r));
        pthread_mutex_lock(&sb->mu);
        for (size_t i = 0; i < sb->n_containers; i++)
                if (sb->containers[i]->state == VC_RUNNING) {
                        sb->containers[i]->state = VC_PAUSED;
                        sb->containers[i]->paused_by_sandbox = true;
                }
        pthread_mutex_unlock(&sb->mu);
        r = set_state(sb, VC_PAUSED, e);
        if (r < 0)
                return r;
        emit_event(sb->m, "sandbox.pause", sb->id, NULL, NULL, who, NULL);
        return 0;
}

static int sandbox_resume_locked(sandbox_t *sb, const kd_caller_t *who, kd_error_t *e) {
        if (sb->state == VC_RUNNING)
                return 0;
        if (sb->state != VC_PAUSED)
                return wrong_state(e, sb, "resume", "paused");
        int r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                return r;
        r = vm_resume(sb->vm);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot resume the VM of sandbox \"%s\": %s", sb->id,
                                    strerror(-r));
        pthread_mutex_lock(&sb->mu);
        for (size_t i = 0; i < sb->n_containers; i++)
                if (sb->containers[i]->paused_by_sandbox) {
                        sb->containers[i]->state = VC_RUNNING;
                        sb->containers[i]->paused_by_sandbox = false;
                }
        pthread_mutex_unlock(&sb->mu);
        r = set_state(sb, VC_RUNNING, e);
        if (r < 0)
                return r;
        emit_event(sb->m, "sandbox.resume", sb->id, NULL, NULL, who, NULL);
        return 0;
}

int manager_sandbox_action(manager_t *m, const char *sid, sandbox_action_t action, const action_options_t *opts,
                           const kd_caller_t *who, kd_error_t *e, json_t **ret_status) {
        sandbox_t *sb;
        int r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        bool force = opts && opts->force;
        int timeout = opts ? opts->timeout_sec : -1;
        switch (action) {
        case SANDBOX_START:
                r = manager_sandbox_start_locked(sb, who, e);
                break;
        case SANDBOX_STOP:
                r = sandbox_stop_locked(sb, force, timeout, who, e);
                break;
        case SANDBOX_PAUSE:
                r = sandbox_pause_locked(sb, who, e);
                break;
        case SANDBOX_RESUME:
                r = sandbox_resume_locked(sb, who, e);
                break;
        case SANDBOX_RELEASE:
                sandbox_drop_handles(sb);
                emit_event(m, "sandbox.release", sb->id, NULL, NULL, who, NULL);
                r = 0;
                break;
        default:
                r = kd_error_set(e, -EINVAL, "bad_request", "unknown action");
        }
        if (r >= 0 && ret_status) {
                pthread_mutex_lock(&sb->mu);
                *ret_status = sandbox_status_json(sb);
                pthread_mutex_unlock(&sb->mu);
        }
        sandbox_release_ref(sb);
        return r;
}

int manager_sandbox_delete(manager_t *m, const char *sid, bool force, const kd_caller_t *who, kd_error_t *e) {
        sandbox_t *sb;
        int r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        if (sb->state == VC_RUNNING || sb->state == VC_PAUSED) {
                if (!force) {
                        r = kd_error_set(e, -EBUSY, "wrong_state",
                                         "cannot delete sandbox \"%s\": it is %s, not ready or stopped; stop it first "
                                         "or delete with force=true",
                                         sid,
                                         vc_state_to_string(sb->state));
                        goto out;
                }
                r = sandbox_stop_locked(sb, true, 0, who, e);
                if (r < 0)
                        goto out;
        }
        if (sb->vm_handle) {
                /* A ready sandbox has a VM with created containers: end it. */
                kd_error_t ignored;
                if (sandbox_ensure_vm(sb, &ignored) >= 0 || sb->vm) {
                        sandbox_close_agent(sb);
                        vm_stop(TAKE_PTR(sb->vm), true);
                }
        }
        sandbox_drop_handles(sb);
        pthread_mutex_lock(&sb->mu);
        store_t *s = m->store;
        r = store_begin(s);
        if (r >= 0) {
                for (size_t i = 0; i < sb->n_containers && r >= 0; i++)
                        r = unpersist_container(sb, sb->containers[i]);
                char key[STORE_KEY_MAX];
                snprintf(key, sizeof key, "sandbox/%s", sb->id);
                if (r >= 0 && (r = store_delete(s, key)) == -ENOENT)
                        r = 0;
                if (r >= 0)
                        r = store_commit(s);
                else
                        store_rollback(s);
        }
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                r = kd_error_set(e, r, "internal", "cannot delete the records of sandbox \"%s\"", sid);
                goto out;
        }
        char dir[4096];
        if (sandbox_share_dir(sb, dir, sizeof dir))
                share_teardown(dir);
        snprintf(dir, sizeof dir, "%s/sandboxes/%s", m->run_dir, sb->id);
        rm_rf(dir);

        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_sandboxes; i++)
                if (m->sandboxes[i] == sb) {
                        m->sandboxes[i] = m->sandboxes[--m->n_sandboxes];
                        sb->removed = true;
                        sb->refs--;
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        emit_event(m, "sandbox.delete", sid, NULL, NULL, who, NULL);
        r = 0;
out:
        sandbox_release_ref(sb);
        return r;
}

int manager_sandbox_list(manager_t *m, json_t **ret_list) {
        json_t *list = json_array();
        if (!list)
                return -ENOMEM;
        pthread_mutex_lock(&m->lock);
        size_t n = m->n_sandboxes;
        sandbox_t **refs = calloc(n ? n : 1, sizeof *refs);
        for (size_t i = 0; refs && i < n; i++) {
                refs[i] = m->sandboxes[i];
                refs[i]->refs++;
        }
        pthread_mutex_unlock(&m->lock);
        if (!refs) {
                json_decref(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                sandbox_t *sb = refs[i];
                pthread_mutex_lock(&sb->mu);
                if (!sb->creating)
                        json_array_append_new(list, sandbox_status_json(sb));
                pthread_mutex_unlock(&sb->mu);
                sandbox_put(sb);
        }
        free(refs);
        *ret_list = list;
        return 0;
}

int sandbox_read_begin(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret) {
        sandbox_t *sb;
        int r = sandbox_get(m, sid, e, &sb);
        if (r < 0)
                return r;
        pthread_mutex_lock(&sb->mu);
        if (sb->creating) {
                pthread_mutex_unlock(&sb->mu);
                r = sandbox_lock(sb, e);
                if (r < 0) {
                        sandbox_put(sb);
                        return r;
                }
                sandbox_unlock(sb);
                pthread_mutex_lock(&sb->mu);
        }
        *ret = sb;
        return 0;
}

void sandbox_read_end(sandbox_t *sb) {
        pthread_mutex_unlock(&sb->mu);
        sandbox_put(sb);
}

int manager_sandbox_status(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_status) {
        sandbox_t *sb;
        int r = sandbox_read_begin(m, sid, e, &sb);
        if (r < 0)
                return r;
        *ret_status = sandbox_status_json(sb);
        sandbox_read_end(sb);
        return *ret_status ? 0 : kd_error_set(e, -ENOMEM, "internal", "out of memory");
}

static void add_int(json_t *dst, const char *key, json_int_t v) {
        json_object_set_new(dst, key, json_integer(json_get_int(dst, key, 0) + v));
}

/* Adds the counters of one container's CgroupStats into the sandbox total. */
static void sum_cgroup_stats(json_t *total, json_t *stats) {
        json_t *cg = json_get_object(stats, "CgroupStats");
        json_t *cpu = json_get_object(json_get_object(cg, "CPUStats"), "CPUUsage");
        json_t *mem = json_get_object(json_get_object(cg, "MemoryStats"), "Usage");
        json_t *pids = json_get_object(cg, "PidsStats");
        json_t *tcpu = json_get_object(json_get_object(total, "CPUStats"), "CPUUsage");
        json_t *tmem = json_get_object(json_get_object(total, "MemoryStats"), "Usage");
        json_t *tpids = json_get_object(total, "PidsStats");
        add_int(tcpu, "TotalUsage", json_get_int(cpu, "TotalUsage", 0));
        add_int(tcpu, "UsageInKernelmode", json_get_int(cpu, "UsageInKernelmode", 0));
        add_int(tcpu, "UsageInUsermode", json_get_int(cpu, "UsageInUsermode", 0));
        add_int(tmem, "Usage", json_get_int(mem, "Usage", 0));
        add_int(tmem, "MaxUsage", json_get_int(mem, "MaxUsage", 0));
        add_int(tpids, "Current", json_get_int(pids, "Current", 0));
}

int manager_sandbox_stats(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_stats) {
        sandbox_t *sb;
        int r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *vm = NULL, *per = json_object(), *total = json_pack(
                "{s:{s:{s:i, s:i, s:i}}, s:{s:{s:i, s:i}}, s:{s:i}}", "CPUStats", "CPUUsage", "TotalUsage", 0,
                "UsageInKernelmode", 0, "UsageInUsermode", 0, "MemoryStats", "Usage", "Usage", 0, "MaxUsage", 0,
                "PidsStats", "Current", 0);
        if (sb->state == VC_STOPPED || sb->state == VC_PAUSED) {
                r = wrong_state(e, sb, "collect stats of", "ready or running");
                goto out;
        }
        r = sandbox_ensure_vm(sb, e);
        if (r < 0)
                goto out;
        r = vm_stats(sb->vm, &vm);
        if (r < 0) {
                r = kd_error_set(e, r, "internal", "cannot read the VM stats of sandbox \"%s\"", sid);
                goto out;
        }
        for (size_t i = 0; i < sb->n_containers; i++) {
                container_t *c = sb->containers[i];
                json_t *stats = NULL;
                _cleanup_free_ char *msg = NULL;
                r = agent_call(sb->agent, "StatsContainer", json_pack("{s:s}", "ContainerID", c->id), &stats, &msg);
                if (r < 0) {
                        r = agent_error(e, r, msg, c->id);
                        goto out;
                }
                sum_cgroup_stats(total, stats);
                json_object_set_new(per, c->id, stats);
        }
        *ret_stats = json_pack("{s:I, s:O, s:O, s:O}", "Cpus", json_get_int(vm, "VCPUs", 1), "CgroupStats", total,
                               "VM", vm, "ContainerStats", per);
        r = *ret_stats ? 0 : kd_error_set(e, -ENOMEM, "internal", "out of memory");
out:
        sandbox_release_ref(sb);
        return r;
}

int manager_sandbox_annotations(manager_t *m, const char *sid, json_t *patch, const kd_caller_t *who, kd_error_t *e,
                                json_t **ret_annotations) {
        sandbox_t *sb;
        int r;
        if (!patch) {
                r = sandbox_read_begin(m, sid, e, &sb);
                if (r < 0)
                        return r;
                *ret_annotations = json_deep_copy(json_get_object(sb->config, "Annotations"));
                sandbox_read_end(sb);
                return 0;
        }
        r = schema_check_annotations_patch(patch, e);
        if (r < 0)
                return r;
        r = sandbox_acquire(m, sid, e, &sb);
        if (r < 0)
                return r;
        pthread_mutex_lock(&sb->mu);
        json_t *ann = json_get_object(sb->config, "Annotations");
        _cleanup_json_ json_t *old = json_deep_copy(ann);
        const char *k;
        json_t *v;
        json_object_foreach(patch, k, v) {
                if (json_is_null(v))
                        json_object_del(ann, k);
                else
                        json_object_set(ann, k, v);
        }
        r = persist_sandbox(sb);
        if (r < 0) {
                json_object_clear(ann);
                json_object_update(ann, old);
                r = kd_error_set(e, r, "internal", "cannot store the annotations of sandbox \"%s\"", sid);
        } else
                *ret_annotations = json_deep_copy(ann);
        pthread_mutex_unlock(&sb->mu);
        if (r >= 0)
                emit_event(m, "sandbox.annotations", sid, NULL, NULL, who, NULL);
        sandbox_release_ref(sb);
        return r;
}
