/* The manager's objects, shared by the files of core/. */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "agent/agent.h"
#include "logs.h"
#include "manager.h"
#include "types.h"
#include "util.h"

typedef struct container {
        char id[ID_MAX + 1];
        unsigned index;      /* creation order within the sandbox */
        json_t *config;      /* validated ContainerConfig */
        json_t *resources;   /* LinuxResources as last applied */
        vc_state_t state;
        bool paused_by_sandbox;
        int pid;
        int64_t start_ns;    /* 0 until started */
        bool exited;
        int exit_code;
        uint32_t stdout_stream, stderr_stream; /* the agent's stdio streams of its own process; 0: none */
        log_sink_t *logs;                      /* consuming them into the log file, while attached */
} container_t;

typedef struct sandbox {
        manager_t *m;
        char id[ID_MAX + 1];
        unsigned refs;       /* m->lock */
        bool removed;        /* m->lock to write; read with op held */

        /* Serialises operations in arrival order (a ticket lock); held across slow work. */
        pthread_mutex_t op_mu;
        pthread_cond_t op_cond;
        uint64_t op_next, op_serving;
        pthread_mutex_t mu;  /* guards the fields below; never held across slow work */

        bool creating;
        vc_state_t state;
        json_t *config;      /* SandboxConfig without Containers */
        char hypervisor[16];
        int64_t created_ns;
        unsigned next_index;
        container_t **containers;
        size_t n_containers;

        json_t *vm_handle;   /* what re-attaches to the VM; NULL when there is no VM */
        vm_t *vm;            /* NULL when released or not yet attached */
        agent_t *agent;
} sandbox_t;

typedef struct waiter {
        struct waiter *next;
        agent_t *agent;
} waiter_t;

struct manager {
        char *run_dir;
        char *default_hypervisor;
        unsigned default_vcpus, default_memory_mib, stop_timeout_sec;
        store_t *store;
        factory_t *factory;

        pthread_mutex_t lock; /* sandboxes, shutting_down, waiters */
        sandbox_t **sandboxes;
        size_t n_sandboxes;
        bool shutting_down;
        waiter_t *waiters;

        manager_event_cb on_event;
        void *event_userdata;

        /* Guest events are queued by the transports and applied by one worker thread. */
        pthread_t worker;
        bool worker_running, worker_stop;
        pthread_mutex_t queue_lock;
        pthread_cond_t queue_cond;
        json_t *queue;
};

/* manager.c */
int sandbox_get(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret);
void sandbox_put(sandbox_t *sb);
/* Takes and gives back the operation lock, first come first served. */
void sandbox_op_lock(sandbox_t *sb);
void sandbox_op_unlock(sandbox_t *sb);
/* sandbox_op_lock, then fails with 404 when the sandbox was deleted while we waited. */
int sandbox_lock(sandbox_t *sb, kd_error_t *e);
void sandbox_unlock(sandbox_t *sb);
/* Looks up and locks in one go; on success the caller must sandbox_unlock + sandbox_put. */
int sandbox_acquire(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret);
void sandbox_release_ref(sandbox_t *sb);
void emit_event(manager_t *m, const char *type, const char *sid, const char *cid, const char *pid,
                const kd_caller_t *who, json_t *extra);
void sandbox_free(sandbox_t *sb);

/* Persistence; mu must be held. */
int persist_sandbox(sandbox_t *sb);
int persist_container(sandbox_t *sb, container_t *c);
int unpersist_container(sandbox_t *sb, container_t *c);

/* JSON views; mu must be held. */
json_t *sandbox_status_json(sandbox_t *sb);
json_t *container_status_json(container_t *c);

container_t *sandbox_find_container(sandbox_t *sb, const char *cid);
int container_new(json_t *config, unsigned index, container_t **ret);
void container_free(container_t *c);
/* Validates a ContainerConfig and fills in a generated ID. */
int container_config_check(json_t *config, const char *what, kd_error_t *e);

/* Makes sure sb->vm and sb->agent are attached (op held); marks the sandbox stopped and returns
 * -ESHUTDOWN (503) when its VM is gone. */
int sandbox_ensure_vm(sandbox_t *sb, kd_error_t *e);
/* Stops capturing logs and closes the sandbox's agent handle (op held). */
void sandbox_close_agent(sandbox_t *sb);
/* Starts capturing the container's output into its log file, when its agent has streams. */
void container_attach_logs(sandbox_t *sb, container_t *c);
/* Drops the VM and agent handles without stopping the VM (op held). */
void sandbox_drop_handles(sandbox_t *sb);
/* Marks every container stopped and the sandbox stopped after its VM vanished (op held). */
void sandbox_mark_vm_gone(sandbox_t *sb);
/* Turns an agent failure into an API error. */
int agent_error(kd_error_t *e, int r, const char *message, const char *what);
/* Opens a second agent handle for a blocking call and registers it so shutdown can cancel it. */
int waiter_open(sandbox_t *sb, agent_t **ret);
void waiter_close(manager_t *m, agent_t *agent);

/* Looks sb up and takes mu for reading; a sandbox still being created is waited for, as the
 * operation it is. sandbox_read_end releases both. */
int sandbox_read_begin(manager_t *m, const char *sid, kd_error_t *e, sandbox_t **ret);
void sandbox_read_end(sandbox_t *sb);
/* The sandbox's share directory (RUN_DIR/sandboxes/SID/shared) into buf; false when its
 * hypervisor does not share files. */
bool sandbox_share_dir(sandbox_t *sb, char *buf, size_t size);
/* Boots a VM for sb and connects its agent (op held). */
int sandbox_boot_vm(sandbox_t *sb, kd_error_t *e);
/* sandbox.c: starts a ready or stopped sandbox and its containers (op held). */
int manager_sandbox_start_locked(sandbox_t *sb, const kd_caller_t *who, kd_error_t *e);

/* container.c: state changes used by sandbox operations too (op held). */
int container_create_in_guest(sandbox_t *sb, container_t *c, kd_error_t *e);
int container_start_locked(sandbox_t *sb, container_t *c, const kd_caller_t *who, kd_error_t *e);
int container_stop_locked(sandbox_t *sb, container_t *c, bool force, int timeout_sec, const kd_caller_t *who,
                          kd_error_t *e);
/* Records that the container's own process exited (state stopped, exit code, stored, event), unless
 * that is already known; by whichever of the guest event and a wait learns it first. */
bool container_record_exit(sandbox_t *sb, const char *cid, int code);
/* Stops every running or paused container of sb: all are signalled, then share one grace period
 * before SIGKILL. Failures are logged; -EIO when there were any (op held). */
int containers_stop_all_locked(sandbox_t *sb, bool force, int timeout_sec, const kd_caller_t *who);
/* Removes the container's host paths from the sandbox share, if it has one. */
void container_unshare(sandbox_t *sb, container_t *c);
