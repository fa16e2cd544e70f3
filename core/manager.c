/* The sandbox manager: the registry of sandboxes, persistence, events, loading after a restart. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-util.h"
#include "log.h"
#include "manager-internal.h"
#include "schema.h"
#include "share.h"

#define RECORD_VERSION 1

/* ---- registry ---- */

static sandbox_t *find_locked(manager_t *m, const char *sid) {
        for (size_t i = 0; i < m->n_sandboxes; i++)
                if (streq(m->sandboxes[i]->id, sid))
                        return m->sandboxes[i];
        return NULL;
}

int sandbox_get(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret) {
        if (!id_is_valid(sid))
                return kd_error_set(e, -EINVAL, "invalid_id", "invalid sandbox id");
        pthread_mutex_lock(&m->lock);
        if (m->shutting_down) {
                pthread_mutex_unlock(&m->lock);
                return kd_error_set(e, -ESHUTDOWN, "unavailable", "katad is shutting down");
        }
        sandbox_t *sb = find_locked(m, sid);
        if (sb)
                sb->refs++;
        pthread_mutex_unlock(&m->lock);
        if (!sb)
                return kd_error_set(e, -ENOENT, "sandbox_not_found", "sandbox \"%s\" not found", sid);
        *ret = sb;
        return 0;
}

void sandbox_put(sandbox_t *sb) {
        if (!sb)
                return;
        manager_t *m = sb->m;
        pthread_mutex_lock(&m->lock);
        bool last = --sb->refs == 0;
        pthread_mutex_unlock(&m->lock);
        if (last)
                sandbox_free(sb);
}

void sandbox_op_lock(sandbox_t *sb) {
        pthread_mutex_lock(&sb->op_mu);
        uint64_t ticket = sb->op_next++;
        while (sb->op_serving != ticket)
                pthread_cond_wait(&sb->op_cond, &sb->op_mu);
        pthread_mutex_unlock(&sb->op_mu);
}

void sandbox_op_unlock(sandbox_t *sb) {
        pthread_mutex_lock(&sb->op_mu);
        sb->op_serving++;
        pthread_cond_broadcast(&sb->op_cond);
        pthread_mutex_unlock(&sb->op_mu);
}

int sandbox_lock(sandbox_t *sb, kd_error_t *e) {
        sandbox_op_lock(sb);
        if (sb->removed) {
                sandbox_op_unlock(sb);
                return kd_error_set(e, -ENOENT, "sandbox_not_found", "sandbox \"%s\" not found", sb->id);
        }
        return 0;
}

void sandbox_unlock(sandbox_t *sb) {
        sandbox_op_unlock(sb);
}

int sandbox_acquire(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret) {
        sandbox_t *sb;
        int r = sandbox_get(m, sid, e, &sb);
        if (r < 0)
                return r;
        r = sandbox_lock(sb, e);
        if (r < 0) {
                sandbox_put(sb);
                return r;
        }
        *ret = sb;
        return 0;
}

void sandbox_release_ref(sandbox_t *sb) {
        sandbox_unlock(sb);
        sandbox_put(sb);
}

/* Takes sb out of the registry; the last reference frees it. */
static void sandbox_unregister(sandbox_t *sb) {
        manager_t *m = sb->m;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->n_sandboxes; i++)
                if (m->sandboxes[i] == sb) {
                        m->sandboxes[i] = m->sandboxes[--m->n_sandboxes];
                        sb->removed = true;
                        sb->refs--; /* the registry's reference */
                        break;
                }
        pthread_mutex_unlock(&m->lock);
}

static int sandbox_new(manager_t *m, const char *sid, sandbox_t **ret) {
        sandbox_t *sb = calloc(1, sizeof *sb);
        if (!sb)
                return -ENOMEM;
        sb->m = m;
        sb->refs = 1;
        snprintf(sb->id, sizeof sb->id, "%s", sid);
        pthread_mutex_init(&sb->op_mu, NULL);
        pthread_cond_init(&sb->op_cond, NULL);
        pthread_mutex_init(&sb->mu, NULL);
        *ret = sb;
        return 0;
}

void sandbox_free(sandbox_t *sb) {
        if (!sb)
                return;
        sandbox_close_agent(sb);
        vm_release(sb->vm);
        for (size_t i = 0; i < sb->n_containers; i++)
                container_free(sb->containers[i]);
        free(sb->containers);
        json_decref(sb->config);
        json_decref(sb->vm_handle);
        pthread_mutex_destroy(&sb->op_mu);
        pthread_cond_destroy(&sb->op_cond);
        pthread_mutex_destroy(&sb->mu);
        free(sb);
}

container_t *sandbox_find_container(sandbox_t *sb, const char *cid) {
        for (size_t i = 0; i < sb->n_containers; i++)
                if (streq(sb->containers[i]->id, cid))
                        return sb->containers[i];
        return NULL;
}

int container_new(json_t *config, unsigned index, container_t **ret) {
        container_t *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        snprintf(c->id, sizeof c->id, "%s", json_get_string(config, "ID"));
        c->index = index;
        c->config = json_incref(config);
        c->resources = json_incref(json_get_object(config, "Resources"));
        c->state = VC_READY;
        *ret = c;
        return 0;
}

void container_free(container_t *c) {
        if (!c)
                return;
        json_decref(c->config);
        json_decref(c->resources);
        free(c);
}

int container_config_check(json_t *config, const char *what, kd_error_t *e) {
        int r = schema_check(config, schema_container_config, what, e);
        if (r < 0)
                return r;
        const char *id = json_get_string(config, "ID");
        if (strempty(id)) {
                char gen[ID_MAX + 1];
                r = id_generate(gen, sizeof gen);
                if (r < 0)
                        return kd_error_set(e, r, "internal", "cannot generate an id");
                json_object_set_new(config, "ID", json_string(gen));
        } else if (!id_is_valid(id))
                return kd_error_set(e, -EINVAL, "invalid_id", "%s.ID: \"%.64s\" is not a valid id", what, id);
        if (json_array_size(json_get_array(json_get_object(config, "Cmd"), "Args")) == 0)
                return kd_error_set(e, -EINVAL, "invalid_field", "%s.Cmd.Args: required, non-empty", what);
        const char *rootfs = rootfs_path(config);
        if (!strempty(rootfs) && !path_is_safe_absolute(rootfs))
                return kd_error_set(e, -EINVAL, "invalid_field",
                                    "%s.RootFs: must be an absolute path without . or .. components", what);
        return 0;
}

/* ---- events ---- */

void emit_event(manager_t *m, const char *type, const char *sid, const char *cid, const char *pid,
                const kd_caller_t *who, json_t *extra) {
        char when[64];
        format_rfc3339(now_realtime_ns(), when, sizeof when);
        _cleanup_json_ json_t *ev = json_pack("{s:s, s:s}", "Type", type, "Time", when);
        if (!ev) {
                json_decref(extra);
                return;
        }
        json_set_string(ev, "SandboxID", sid);
        json_set_string(ev, "ContainerID", cid);
        json_set_string(ev, "ProcessID", pid);
        if (who && who->known)
                json_object_set_new(ev, "UID", json_integer(who->uid));
        if (extra) {
                json_object_update(ev, extra);
                json_decref(extra);
        }
        log_debug("Event %s sandbox=%s container=%s", type, sid ? sid : "-", cid ? cid : "-");
        if (m->on_event)
                m->on_event(ev, m->event_userdata);
}

/* ---- persistence ---- */

static void key_sandbox(char *buf, size_t size, const char *sid) {
        snprintf(buf, size, "sandbox/%s", sid);
}

static void key_container(char *buf, size_t size, const char *sid, const char *cid) {
        snprintf(buf, size, "container/%s/%s", sid, cid);
}

static int save_json(store_t *store, const char *key, json_t *j) {
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        int r = store_save(store, key, text, strlen(text));
        if (r < 0)
                log_error_errno(r, "Failed to store %s: %m", key);
        return r;
}

int persist_sandbox(sandbox_t *sb) {
        char key[STORE_KEY_MAX], created[64];
        key_sandbox(key, sizeof key, sb->id);
        format_rfc3339(sb->created_ns, created, sizeof created);
        _cleanup_json_ json_t *rec =
                json_pack("{s:i, s:s, s:O, s:s, s:s, s:s, s:b, s:i, s:O?}", "Version", RECORD_VERSION, "ID", sb->id,
                          "Config", sb->config, "State", vc_state_to_string(sb->state), "Hypervisor", sb->hypervisor,
                          "CreatedAt", created, "Creating", sb->creating, "NextIndex", (int) sb->next_index, "VM",
                          sb->vm_handle);
        if (!rec)
                return -ENOMEM;
        return save_json(sb->m->store, key, rec);
}

int persist_container(sandbox_t *sb, container_t *c) {
        char key[STORE_KEY_MAX];
        key_container(key, sizeof key, sb->id, c->id);
        _cleanup_json_ json_t *rec = json_pack(
                "{s:i, s:s, s:i, s:O, s:O?, s:s, s:b, s:i, s:I, s:b, s:i, s:I, s:I}", "Version", RECORD_VERSION, "ID",
                c->id, "Index", (int) c->index, "Config", c->config, "Resources", c->resources, "State",
                vc_state_to_string(c->state), "PausedBySandbox", c->paused_by_sandbox, "PID", c->pid, "StartNs",
                (json_int_t) c->start_ns, "Exited", c->exited, "ExitCode", c->exit_code, "StdoutStream",
                (json_int_t) c->stdout_stream, "StderrStream", (json_int_t) c->stderr_stream);
        if (!rec)
                return -ENOMEM;
        return save_json(sb->m->store, key, rec);
}

int unpersist_container(sandbox_t *sb, container_t *c) {
        char key[STORE_KEY_MAX];
        key_container(key, sizeof key, sb->id, c->id);
        int r = store_delete(sb->m->store, key);
        return r == -ENOENT ? 0 : r;
}

/* Removes the records of sb and its containers in one transaction. */
static int unpersist_sandbox(sandbox_t *sb) {
        store_t *s = sb->m->store;
        int r = store_begin(s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sb->n_containers && r >= 0; i++)
                r = unpersist_container(sb, sb->containers[i]);
        char key[STORE_KEY_MAX];
        key_sandbox(key, sizeof key, sb->id);
        if (r >= 0) {
                r = store_delete(s, key);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r < 0) {
                store_rollback(s);
                return log_error_errno(r, "Failed to delete the records of sandbox %s: %m", sb->id);
        }
        return store_commit(s);
}

/* Writes the sandbox and all its containers in one transaction. */
static int persist_all(sandbox_t *sb) {
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

/* ---- JSON views ---- */

json_t *container_status_json(container_t *c) {
        char started[64] = "0001-01-01T00:00:00Z";
        if (c->start_ns > 0)
                format_rfc3339(c->start_ns, started, sizeof started);
        json_t *ann = json_get_object(c->config, "Annotations");
        json_t *j = json_pack("{s:s, s:{s:s}, s:i, s:s, s:s, s:o}", "ID", c->id, "State", "state",
                              vc_state_to_string(c->state), "PID", c->pid, "StartTime", started, "RootFs",
                              rootfs_path(c->config) ? rootfs_path(c->config) : "", "Annotations",
                              ann ? json_deep_copy(ann) : json_object());
        if (j && c->exited)
                json_object_set_new(j, "ExitCode", json_integer(c->exit_code));
        return j;
}

json_t *sandbox_status_json(sandbox_t *sb) {
        char created[64];
        format_rfc3339(sb->created_ns, created, sizeof created);
        json_t *containers = json_array();
        for (size_t i = 0; containers && i < sb->n_containers; i++)
                json_array_append_new(containers, container_status_json(sb->containers[i]));
        json_t *hc = json_get_object(sb->config, "HypervisorConfig");
        json_t *ann = json_get_object(sb->config, "Annotations");
        const char *agent = json_get_string(sb->config, "AgentType");
        return json_pack("{s:s, s:{s:s}, s:s, s:o, s:s, s:o, s:o, s:s}", "ID", sb->id, "State", "state",
                         vc_state_to_string(sb->state), "Hypervisor", sb->hypervisor, "HypervisorConfig",
                         hc ? json_deep_copy(hc) : json_object(), "Agent", strempty(agent) ? "kata" : agent,
                         "ContainersStatus", containers, "Annotations", ann ? json_deep_copy(ann) : json_object(),
                         "CreatedAt", created);
}

/* ---- VM handles ---- */

static void enqueue(manager_t *m, const char *sid, json_t *event);

static void on_agent_event(agent_t *agent, json_t *event, void *userdata) {
        sandbox_t *sb = userdata;
        /* sb outlives its agent (the agent is closed before sb is freed), but only the id is used
         * here: the worker looks the sandbox up again under its own locks. */
        enqueue(sb->m, sb->id, event);
}

int agent_error(kd_error_t *e, int r, const char *message, const char *what) {
        const char *msg = message ? message : strerror(-r);
        switch (-r) {
        case ENOENT:
                return kd_error_set(e, r, strstr(msg, "container") == msg ? "container_not_found" : "process_not_found",
                                    "%s: %s", what, msg);
        case EBUSY:
        case ESRCH:
        case ENOTTY:
        case EEXIST:
                return kd_error_set(e, -EBUSY, r == -EEXIST ? "already_exists" : "wrong_state", "%s: %s", what, msg);
        case EINVAL:
                return kd_error_set(e, r, "bad_request", "%s: %s", what, msg);
        case ESHUTDOWN:
        case EAGAIN:
        case ENOTCONN:
        case ECONNRESET:
        case EPIPE:
        case ETIMEDOUT:
                return kd_error_set(e, -ESHUTDOWN, "unavailable", "%s: %s", what, msg);
        default:
                return kd_error_set(e, r, "internal", "%s: %s", what, msg);
        }
}

int sandbox_ensure_vm(sandbox_t *sb, kd_error_t *e) {
        if (sb->vm && sb->agent)
                return 0;
        if (!sb->vm_handle)
                return kd_error_set(e, -EBUSY, "wrong_state", "sandbox \"%s\" is %s and has no VM", sb->id,
                                    vc_state_to_string(sb->state));
        int r = 0;
        if (!sb->vm) {
                vmm_t *vmm = factory_get_vmm(sb->m->factory, sb->hypervisor);
                if (!vmm)
                        return kd_error_set(e, -EOPNOTSUPP, "unavailable",
                                            "hypervisor %s of sandbox \"%s\" is not available", sb->hypervisor, sb->id);
                r = vmm_attach(vmm, sb->id, sb->vm_handle, &sb->vm);
                if (r == -ESRCH) {
                        log_warning("The VM of sandbox %s is gone", sb->id);
                        sandbox_mark_vm_gone(sb);
                        return kd_error_set(e, -ESHUTDOWN, "unavailable",
                                            "the VM of sandbox \"%s\" is gone; the sandbox is now stopped", sb->id);
                }
                if (r < 0)
                        return kd_error_set(e, r, "internal", "cannot attach to the VM of sandbox \"%s\": %s", sb->id,
                                            strerror(-r));
        }
        r = vm_connect_agent(sb->vm, &sb->agent);
        if (r < 0)
                return kd_error_set(e, -ESHUTDOWN, "unavailable", "cannot reach the agent of sandbox \"%s\": %s",
                                    sb->id, strerror(-r));
        agent_set_event_handler(sb->agent, on_agent_event, sb);
        for (size_t i = 0; i < sb->n_containers; i++)
                container_attach_logs(sb, sb->containers[i]);
        return 0;
}

void sandbox_close_agent(sandbox_t *sb) {
        for (size_t i = 0; i < sb->n_containers; i++)
                log_sink_detach(TAKE_PTR(sb->containers[i]->logs));
        agent_close(TAKE_PTR(sb->agent));
}

void container_attach_logs(sandbox_t *sb, container_t *c) {
        if (!sb->agent || c->logs || (!c->stdout_stream && !c->stderr_stream))
                return;
        char path[4096];
        logs_path(sb->m->run_dir, sb->id, c->id, path, sizeof path);
        int r = log_sink_attach(sb->agent, path, c->stdout_stream, c->stderr_stream, &c->logs);
        if (r < 0 && r != -EOPNOTSUPP)
                log_warning_errno(r, "Cannot capture the output of container %s/%s: %m", sb->id, c->id);
}

void sandbox_drop_handles(sandbox_t *sb) {
        sandbox_close_agent(sb);
        vm_release(TAKE_PTR(sb->vm));
}

void sandbox_mark_vm_gone(sandbox_t *sb) {
        sandbox_drop_handles(sb);
        pthread_mutex_lock(&sb->mu);
        for (size_t i = 0; i < sb->n_containers; i++) {
                container_t *c = sb->containers[i];
                if (c->state != VC_STOPPED) {
                        c->state = VC_STOPPED;
                        c->paused_by_sandbox = false;
                        if (c->start_ns > 0 && !c->exited) {
                                c->exited = true;
                                c->exit_code = 128 + 9;
                        }
                }
        }
        sb->state = VC_STOPPED;
        json_decref(TAKE_PTR(sb->vm_handle));
        persist_all(sb);
        pthread_mutex_unlock(&sb->mu);
        emit_event(sb->m, "sandbox.vm-exited", sb->id, NULL, NULL, NULL, NULL);
}

int waiter_open(sandbox_t *sb, agent_t **ret) {
        agent_t *a;
        int r = vm_connect_agent(sb->vm, &a);
        if (r < 0)
                return r;
        waiter_t *w = calloc(1, sizeof *w);
        if (!w) {
                agent_close(a);
                return -ENOMEM;
        }
        w->agent = a;
        manager_t *m = sb->m;
        pthread_mutex_lock(&m->lock);
        w->next = m->waiters;
        m->waiters = w;
        if (m->shutting_down)
                agent_cancel(a);
        pthread_mutex_unlock(&m->lock);
        *ret = a;
        return 0;
}

void waiter_close(manager_t *m, agent_t *agent) {
        pthread_mutex_lock(&m->lock);
        for (waiter_t **pp = &m->waiters; *pp; pp = &(*pp)->next)
                if ((*pp)->agent == agent) {
                        waiter_t *w = *pp;
                        *pp = w->next;
                        free(w);
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        agent_close(agent);
}

/* ---- guest events ---- */

static void enqueue(manager_t *m, const char *sid, json_t *event) {
        json_t *item = json_pack("{s:s, s:O}", "SandboxID", sid, "Event", event);
        if (!item)
                return;
        pthread_mutex_lock(&m->queue_lock);
        json_array_append_new(m->queue, item);
        pthread_cond_signal(&m->queue_cond);
        pthread_mutex_unlock(&m->queue_lock);
}

void manager_vm_exited(manager_t *m, const char *sid) {
        _cleanup_json_ json_t *ev = json_pack("{s:s}", "Type", "vm-exit");
        if (ev)
                enqueue(m, sid, ev);
}

static void apply_vm_exit(manager_t *m, const char *sid) {
        sandbox_t *sb;
        if (sandbox_acquire(m, sid, NULL, &sb) < 0)
                return;
        if (sb->state != VC_STOPPED && sb->vm_handle) {
                log_warning("The VM of sandbox %s ended on its own", sid);
                sandbox_mark_vm_gone(sb);
        }
        sandbox_release_ref(sb);
}

static void apply_guest_event(manager_t *m, const char *sid, json_t *ev) {
        const char *type = json_get_string(ev, "Type");
        const char *cid = json_get_string(ev, "ContainerID");
        if (type && streq(type, "vm-exit")) {
                apply_vm_exit(m, sid);
                return;
        }
        if (type && streq(type, "oom") && id_is_valid(cid)) {
                emit_event(m, "container.oom", sid, cid, NULL, NULL, NULL);
                return;
        }
        if (!type || !cid || !streq(type, "process-exit"))
                return;
        sandbox_t *sb;
        if (sandbox_get(m, sid, NULL, &sb) < 0)
                return;
        const char *exec_id = json_get_string(ev, "ExecID");
        int code = (int) json_get_int(ev, "ExitCode", -1);
        bool init = strempty(exec_id);
        pthread_mutex_lock(&sb->mu);
        container_t *c = sandbox_find_container(sb, cid);
        pthread_mutex_unlock(&sb->mu);
        if (c && init)
                container_record_exit(sb, cid, code);
        if (c)
                emit_event(m, "process.exit", sid, cid, init ? cid : exec_id, NULL, json_pack("{s:i}", "ExitCode", code));
        sandbox_put(sb);
}

bool container_record_exit(sandbox_t *sb, const char *cid, int code) {
        bool changed = false;
        pthread_mutex_lock(&sb->mu);
        container_t *c = sandbox_find_container(sb, cid);
        if (c && c->state != VC_STOPPED && c->start_ns > 0) {
                c->state = VC_STOPPED;
                c->paused_by_sandbox = false;
                c->exited = true;
                c->exit_code = code;
                persist_container(sb, c);
                changed = true;
        }
        pthread_mutex_unlock(&sb->mu);
        if (changed)
                emit_event(sb->m, "container.exit", sb->id, cid, cid, NULL, json_pack("{s:i}", "ExitCode", code));
        return changed;
}

static void *worker_main(void *userdata) {
        manager_t *m = userdata;
        pthread_mutex_lock(&m->queue_lock);
        for (;;) {
                while (json_array_size(m->queue) == 0 && !m->worker_stop)
                        pthread_cond_wait(&m->queue_cond, &m->queue_lock);
                if (json_array_size(m->queue) == 0 && m->worker_stop)
                        break;
                json_t *item = json_incref(json_array_get(m->queue, 0));
                json_array_remove(m->queue, 0);
                pthread_mutex_unlock(&m->queue_lock);
                apply_guest_event(m, json_get_string(item, "SandboxID"), json_get_object(item, "Event"));
                json_decref(item);
                pthread_mutex_lock(&m->queue_lock);
        }
        pthread_mutex_unlock(&m->queue_lock);
        return NULL;
}

/* ---- lifecycle ---- */

int manager_new(const manager_config_t *config, store_t *store, factory_t *factory, manager_t **ret) {
        manager_t *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->run_dir = strdup(config->run_dir);
        m->default_hypervisor = strdup(config->default_hypervisor);
        m->default_vcpus = config->default_vcpus ? config->default_vcpus : 1;
        m->default_memory_mib = config->default_memory_mib ? config->default_memory_mib : 128;
        m->stop_timeout_sec = config->stop_timeout_sec ? config->stop_timeout_sec : 10;
        m->store = store;
        m->factory = factory;
        m->queue = json_array();
        pthread_mutex_init(&m->lock, NULL);
        pthread_mutex_init(&m->queue_lock, NULL);
        pthread_cond_init(&m->queue_cond, NULL);
        if (!m->run_dir || !m->default_hypervisor || !m->queue) {
                manager_free(m);
                return -ENOMEM;
        }
        int r = -pthread_create(&m->worker, NULL, worker_main, m);
        if (r < 0) {
                manager_free(m);
                return r;
        }
        m->worker_running = true;
        *ret = m;
        return 0;
}

void manager_set_event_handler(manager_t *m, manager_event_cb cb, void *userdata) {
        m->on_event = cb;
        m->event_userdata = userdata;
}

json_t *manager_hypervisors(manager_t *m) {
        return factory_hypervisors(m->factory);
}

typedef struct load_state {
        manager_t *m;
        json_t *records;
} load_state_t;

static int collect_record(const char *key, const char *value, size_t len, void *userdata) {
        json_t *list = userdata;
        json_t *j = json_loadb(value, len, 0, NULL);
        if (!j) {
                log_error("Ignoring the unreadable record %s", key);
                return 0;
        }
        json_object_set_new(j, "_key", json_string(key));
        json_array_append_new(list, j);
        return 0;
}

static int compare_index(const void *a, const void *b) {
        const container_t *x = *(container_t *const *) a, *y = *(container_t *const *) b;
        return (x->index > y->index) - (x->index < y->index);
}

static int load_containers(sandbox_t *sb) {
        char prefix[STORE_KEY_MAX];
        snprintf(prefix, sizeof prefix, "container/%s/", sb->id);
        _cleanup_json_ json_t *records = json_array();
        int r = store_list(sb->m->store, prefix, collect_record, records);
        if (r < 0)
                return r;
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec) {
                json_t *config = json_get_object(rec, "Config");
                vc_state_t state;
                if (!config || !id_is_valid(json_get_string(config, "ID")) ||
                    vc_state_from_string(json_get_string(rec, "State"), &state) < 0) {
                        log_error("Ignoring the malformed record %s", json_get_string(rec, "_key"));
                        continue;
                }
                container_t *c;
                r = container_new(config, (unsigned) json_get_int(rec, "Index", 0), &c);
                if (r < 0)
                        return r;
                json_decref(c->resources);
                c->resources = json_incref(json_get_object(rec, "Resources"));
                c->state = state;
                c->paused_by_sandbox = json_get_bool(rec, "PausedBySandbox", false);
                c->pid = (int) json_get_int(rec, "PID", 0);
                c->start_ns = json_get_int(rec, "StartNs", 0);
                c->exited = json_get_bool(rec, "Exited", false);
                c->exit_code = (int) json_get_int(rec, "ExitCode", 0);
                c->stdout_stream = (uint32_t) json_get_int(rec, "StdoutStream", 0);
                c->stderr_stream = (uint32_t) json_get_int(rec, "StderrStream", 0);
                container_t **n = realloc(sb->containers, (sb->n_containers + 1) * sizeof *n);
                if (!n) {
                        container_free(c);
                        return -ENOMEM;
                }
                sb->containers = n;
                sb->containers[sb->n_containers++] = c;
        }
        if (sb->n_containers > 1)
                qsort(sb->containers, sb->n_containers, sizeof *sb->containers, compare_index);
        return 0;
}

/* Brings container states in line with what the guest reports after katad was away. */
static void reconcile_with_guest(sandbox_t *sb) {
        _cleanup_json_ json_t *result = NULL;
        int r = agent_call(sb->agent, "ListContainers", NULL, &result, NULL);
        if (r < 0) {
                log_warning_errno(r, "Cannot list the containers of sandbox %s: %m", sb->id);
                return;
        }
        json_t *list = json_get_array(result, "Containers");
        pthread_mutex_lock(&sb->mu);
        for (size_t i = 0; i < sb->n_containers; i++) {
                container_t *c = sb->containers[i];
                json_t *found = NULL, *gc;
                size_t k;
                json_array_foreach(list, k, gc) if (streq(json_get_string(gc, "ID") ?: "", c->id)) found = gc;
                bool exited = found ? json_get_bool(found, "Exited", false) : c->start_ns > 0;
                if (c->state != VC_STOPPED && c->start_ns > 0 && exited) {
                        c->state = VC_STOPPED;
                        c->paused_by_sandbox = false;
                        c->exited = true;
                        c->exit_code = found ? (int) json_get_int(found, "ExitCode", 0) : 128 + 9;
                        persist_container(sb, c);
                        log_info("Container %s/%s exited while katad was away (code %d)", sb->id, c->id,
                                 c->exit_code);
                }
        }
        pthread_mutex_unlock(&sb->mu);
}

static int load_sandbox(manager_t *m, json_t *rec) {
        const char *sid = json_get_string(rec, "ID");
        json_t *config = json_get_object(rec, "Config");
        vc_state_t state;
        if (!id_is_valid(sid) || !config || vc_state_from_string(json_get_string(rec, "State"), &state) < 0) {
                log_error("Ignoring the malformed record %s", json_get_string(rec, "_key"));
                return 0;
        }
        sandbox_t *sb;
        int r = sandbox_new(m, sid, &sb);
        if (r < 0)
                return r;
        sb->config = json_incref(config);
        sb->state = state;
        sb->creating = json_get_bool(rec, "Creating", false);
        sb->next_index = (unsigned) json_get_int(rec, "NextIndex", 0);
        snprintf(sb->hypervisor, sizeof sb->hypervisor, "%s", json_get_string(rec, "Hypervisor") ?: "");
        const char *created = json_get_string(rec, "CreatedAt");
        if (!created || parse_rfc3339(created, &sb->created_ns) < 0)
                sb->created_ns = now_realtime_ns();
        json_t *vm = json_object_get(rec, "VM");
        sb->vm_handle = json_is_object(vm) ? json_incref(vm) : NULL;
        r = load_containers(sb);
        if (r < 0) {
                sandbox_free(sb);
                return r;
        }

        if (sb->creating) {
                /* katad died while creating it: finish the job by undoing it. */
                log_info("Removing sandbox %s, whose creation was interrupted", sid);
                vmm_t *vmm = factory_get_vmm(m->factory, sb->hypervisor);
                vm_t *v = NULL;
                if (sb->vm_handle && vmm && vmm_attach(vmm, sid, sb->vm_handle, &v) >= 0)
                        vm_stop(v, true);
                char share[4096];
                if (sandbox_share_dir(sb, share, sizeof share))
                        share_teardown(share);
                unpersist_sandbox(sb);
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/sandboxes/%s", m->run_dir, sid);
                rm_rf(dir);
                sandbox_free(sb);
                return 0;
        }

        pthread_mutex_lock(&m->lock);
        sandbox_t **n = realloc(m->sandboxes, (m->n_sandboxes + 1) * sizeof *n);
        if (!n) {
                pthread_mutex_unlock(&m->lock);
                sandbox_free(sb);
                return -ENOMEM;
        }
        m->sandboxes = n;
        m->sandboxes[m->n_sandboxes++] = sb;
        pthread_mutex_unlock(&m->lock);

        if (sb->vm_handle && sb->state != VC_STOPPED) {
                sandbox_op_lock(sb);
                kd_error_t e;
                if (sandbox_ensure_vm(sb, &e) >= 0)
                        reconcile_with_guest(sb);
                else
                        log_warning("Sandbox %s: %s", sid, e.message);
                sandbox_op_unlock(sb);
        }
        log_info("Loaded sandbox %s (%s, %zu containers)", sid, vc_state_to_string(sb->state), sb->n_containers);
        return 0;
}

int manager_load(manager_t *m) {
        _cleanup_json_ json_t *records = json_array();
        if (!records)
                return -ENOMEM;
        int r = store_list(m->store, "sandbox/", collect_record, records);
        if (r < 0)
                return log_error_errno(r, "Failed to list sandboxes in the store: %m");
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec) {
                r = load_sandbox(m, rec);
                if (r < 0)
                        return log_error_errno(r, "Failed to load sandbox %s: %m", json_get_string(rec, "ID"));
        }
        return 0;
}

void manager_shutdown(manager_t *m) {
        pthread_mutex_lock(&m->lock);
        m->shutting_down = true;
        for (waiter_t *w = m->waiters; w; w = w->next)
                agent_cancel(w->agent);
        size_t n = m->n_sandboxes;
        sandbox_t **list = calloc(n ? n : 1, sizeof *list);
        for (size_t i = 0; list && i < n; i++) {
                list[i] = m->sandboxes[i];
                list[i]->refs++;
        }
        pthread_mutex_unlock(&m->lock);
        if (!list)
                return;
        for (size_t i = 0; i < n; i++) {
                sandbox_op_lock(list[i]);
                sandbox_drop_handles(list[i]);
                sandbox_op_unlock(list[i]);
                sandbox_put(list[i]);
        }
        free(list);
}

void manager_free(manager_t *m) {
        if (!m)
                return;
        if (m->worker_running) {
                pthread_mutex_lock(&m->queue_lock);
                m->worker_stop = true;
                pthread_cond_signal(&m->queue_cond);
                pthread_mutex_unlock(&m->queue_lock);
                pthread_join(m->worker, NULL);
        }
        for (size_t i = 0; i < m->n_sandboxes; i++)
                sandbox_free(m->sandboxes[i]);
        free(m->sandboxes);
        while (m->waiters) {
                waiter_t *w = m->waiters;
                m->waiters = w->next;
                free(w);
        }
        json_decref(m->queue);
        pthread_mutex_destroy(&m->lock);
        pthread_mutex_destroy(&m->queue_lock);
        pthread_cond_destroy(&m->queue_cond);
        free(m->run_dir);
        free(m->default_hypervisor);
        free(m);
}

/* ---- sandbox creation (here because it builds the registry entry) ---- */

bool sandbox_share_dir(sandbox_t *sb, char *buf, size_t size) {
        vmm_t *vmm = factory_get_vmm(sb->m->factory, sb->hypervisor);
        if (!vmm || !vmm_shares_files(vmm))
                return false;
        snprintf(buf, size, "%s/sandboxes/%s/shared", sb->m->run_dir, sb->id);
        return true;
}

static int sandbox_rollback_create(sandbox_t *sb) {
        sandbox_close_agent(sb);
        if (sb->vm)
                vm_stop(TAKE_PTR(sb->vm), true);
        char share[4096];
        if (sandbox_share_dir(sb, share, sizeof share))
                share_teardown(share);
        unpersist_sandbox(sb);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/sandboxes/%s", sb->m->run_dir, sb->id);
        rm_rf(dir);
        sandbox_unregister(sb);
        return 0;
}

int sandbox_boot_vm(sandbox_t *sb, kd_error_t *e) {
        manager_t *m = sb->m;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/sandboxes/%s", m->run_dir, sb->id);
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot create the run directory of sandbox \"%s\": %s", sb->id,
                                    strerror(-r));
        json_t *vmc = json_get_object(sb->config, "VMConfig");
        json_t *hc = json_get_object(sb->config, "HypervisorConfig");
        unsigned memory = (unsigned) json_get_int(vmc, "Memory", 0);
        if (!memory)
                memory = (unsigned) json_get_int(hc, "MemorySize", json_get_int(hc, "DefaultMemSz", 0));
        unsigned vcpus = (unsigned) json_get_int(hc, "NumVCPUs", json_get_int(hc, "DefaultVCPUs", 0));
        vm_config_t vc = {
                .id = sb->id,
                .run_dir = dir,
                .hypervisor_config = hc,
                .annotations = json_get_object(sb->config, "Annotations"),
                .vcpus = vcpus ? vcpus : m->default_vcpus,
                .memory_mib = memory ? memory : m->default_memory_mib,
        };
        /* The share must be in place before the VM starts: QEMU opens its root once, and binds made
         * later below a directory it opened beneath a later self-bind would stay invisible to it. */
        char share[4096];
        if (sandbox_share_dir(sb, share, sizeof share) && (r = share_setup(share)) < 0)
                return kd_error_set(e, r, "internal", "cannot prepare the share of sandbox \"%s\": %s", sb->id,
                                    strerror(-r));
        vm_t *vm;
        r = factory_get_vm(m->factory, sb->hypervisor, &vc, &vm);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot boot the VM of sandbox \"%s\": %s", sb->id, strerror(-r));
        pthread_mutex_lock(&sb->mu);
        sb->vm = vm;
        json_decref(sb->vm_handle);
        sb->vm_handle = vm_get_handle(vm);
        r = persist_sandbox(sb);
        pthread_mutex_unlock(&sb->mu);
        if (r < 0)
                return kd_error_set(e, r, "internal", "cannot store sandbox \"%s\"", sb->id);
        return sandbox_ensure_vm(sb, e);
}

int manager_sandbox_create(manager_t *m, json_t *config, bool start, const kd_caller_t *who, kd_error_t *e,
                           json_t **ret_status) {
        int r = schema_check(config, schema_sandbox_config, "SandboxConfig", e);
        if (r < 0)
                return r;
        char sid[ID_MAX + 1];
        const char *id = json_get_string(config, "ID");
        if (strempty(id)) {
                r = id_generate(sid, sizeof sid);
                if (r < 0)
                        return kd_error_set(e, r, "internal", "cannot generate an id");
        } else if (!id_is_valid(id))
                return kd_error_set(e, -EINVAL, "invalid_id", "ID: \"%.64s\" is not a valid id", id);
        else
                snprintf(sid, sizeof sid, "%s", id);

        const char *hv = json_get_string(config, "HypervisorType");
        if (strempty(hv))
                hv = m->default_hypervisor;
        if (!factory_get_vmm(m->factory, hv)) {
                _cleanup_json_ json_t *avail = factory_hypervisors(m->factory);
                _cleanup_free_ char *names = json_dumps(avail, JSON_COMPACT);
                return kd_error_set(e, -EINVAL, "invalid_field", "HypervisorType: %s is not available (have %s)", hv,
                                    names ? names : "none");
        }

        _cleanup_json_ json_t *containers = json_incref(json_get_array(config, "Containers"));
        size_t i;
        json_t *cc;
        json_array_foreach(containers, i, cc) {
                char what[48];
                snprintf(what, sizeof what, "Containers[%zu]", i);
                r = container_config_check(cc, what, e);
                if (r < 0)
                        return r;
                for (size_t k = 0; k < i; k++)
                        if (streq(json_get_string(json_array_get(containers, k), "ID"), json_get_string(cc, "ID")))
                                return kd_error_set(e, -EINVAL, "invalid_field", "%s.ID: duplicate container id %s",
                                                    what, json_get_string(cc, "ID"));
        }

        sandbox_t *sb;
        r = sandbox_new(m, sid, &sb);
        if (r < 0)
                return kd_error_set(e, r, "internal", "out of memory");
        sb->config = json_deep_copy(config);
        json_object_del(sb->config, "Containers");
        json_object_set_new(sb->config, "ID", json_string(sid));
        if (!json_get_object(sb->config, "Annotations"))
                json_object_set_new(sb->config, "Annotations", json_object());
        snprintf(sb->hypervisor, sizeof sb->hypervisor, "%s", hv);
        sb->state = VC_READY;
        sb->creating = true;
        sb->created_ns = now_realtime_ns();
        json_array_foreach(containers, i, cc) {
                container_t *c;
                json_t *copy = json_deep_copy(cc);
                r = copy ? container_new(copy, sb->next_index++, &c) : -ENOMEM;
                json_decref(copy);
                if (r < 0) {
                        sandbox_free(sb);
                        return kd_error_set(e, r, "internal", "out of memory");
                }
                container_t **n = realloc(sb->containers, (sb->n_containers + 1) * sizeof *n);
                if (!n) {
                        container_free(c);
                        sandbox_free(sb);
                        return kd_error_set(e, -ENOMEM, "internal", "out of memory");
                }
                sb->containers = n;
                sb->containers[sb->n_containers++] = c;
        }

        /* Register it locked, so that every other operation on this id waits for the outcome. */
        sandbox_op_lock(sb);
        pthread_mutex_lock(&m->lock);
        if (m->shutting_down || find_locked(m, sid)) {
                bool down = m->shutting_down;
                pthread_mutex_unlock(&m->lock);
                sandbox_op_unlock(sb);
                sandbox_free(sb);
                if (down)
                        return kd_error_set(e, -ESHUTDOWN, "unavailable", "katad is shutting down");
                return kd_error_set(e, -EEXIST, "already_exists", "sandbox \"%s\" already exists", sid);
        }
        sandbox_t **n = realloc(m->sandboxes, (m->n_sandboxes + 1) * sizeof *n);
        if (!n) {
                pthread_mutex_unlock(&m->lock);
                sandbox_op_unlock(sb);
                sandbox_free(sb);
                return kd_error_set(e, -ENOMEM, "internal", "out of memory");
        }
        m->sandboxes = n;
        m->sandboxes[m->n_sandboxes++] = sb;
        sb->refs++; /* ours, besides the registry's */
        pthread_mutex_unlock(&m->lock);

        pthread_mutex_lock(&sb->mu);
        r = persist_sandbox(sb);
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                kd_error_set(e, r, "internal", "cannot store sandbox \"%s\"", sid);
                goto fail;
        }
        r = sandbox_boot_vm(sb, e);
        if (r < 0)
                goto fail;
        for (i = 0; i < sb->n_containers; i++) {
                r = container_create_in_guest(sb, sb->containers[i], e);
                if (r < 0)
                        goto fail;
        }
        pthread_mutex_lock(&sb->mu);
        sb->creating = false;
        r = persist_all(sb);
        pthread_mutex_unlock(&sb->mu);
        if (r < 0) {
                kd_error_set(e, r, "internal", "cannot store sandbox \"%s\"", sid);
                goto fail;
        }
        emit_event(m, "sandbox.create", sid, NULL, NULL, who, NULL);
        for (i = 0; i < sb->n_containers; i++)
                emit_event(m, "container.create", sid, sb->containers[i]->id, NULL, who, NULL);

        if (start) {
                /* A failure to start leaves a created sandbox, as CreateSandbox would have. */
                r = manager_sandbox_start_locked(sb, who, e);
                if (r < 0) {
                        sandbox_release_ref(sb);
                        return r;
                }
        }
        pthread_mutex_lock(&sb->mu);
        *ret_status = sandbox_status_json(sb);
        pthread_mutex_unlock(&sb->mu);
        sandbox_release_ref(sb);
        return 0;

fail:
        log_warning("Creating sandbox %s failed: %s", sid, e ? e->message : "");
        sandbox_rollback_create(sb);
        sandbox_release_ref(sb);
        return r;
}
