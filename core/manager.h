/* The sandbox manager: owns every sandbox and container, their state machines and persistence.
 *
 * Each operation takes the caller (for events), a kd_error_t for the API edge, and returns
 * negative errno on failure. Operations on one sandbox run one at a time in arrival order;
 * operations on different sandboxes run concurrently (each caller brings its own thread).
 * Every state change is in the store before the operation returns. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "error.h"
#include "factory/factory.h"
#include "store/store.h"

typedef struct manager manager_t;

typedef struct kd_caller {
        bool known; /* false for katad's own actions */
        uid_t uid;
        pid_t pid;
} kd_caller_t;

/* Receives every event (a new reference is NOT passed: the callee must incref to keep it).
 * Called from the thread that caused the event; must not call back into the manager. */
typedef void (*manager_event_cb)(json_t *event, void *userdata);

typedef struct manager_config {
        const char *run_dir;          /* per-sandbox run directories live under run_dir/sandboxes */
        const char *default_hypervisor;
        unsigned default_vcpus;
        unsigned default_memory_mib;
        unsigned stop_timeout_sec;    /* SIGTERM to SIGKILL when stopping a container */
} manager_config_t;

/* Creates the manager on an open store and a factory. Does not load anything yet. */
int manager_new(const manager_config_t *config, store_t *store, factory_t *factory, manager_t **ret);
void manager_set_event_handler(manager_t *m, manager_event_cb cb, void *userdata);
/* Loads every sandbox from the store, re-attaches to its VM and reconciles container states
 * with the guest; a VM that is gone marks its sandbox stopped. Cleans up half-created ones. */
int manager_load(manager_t *m);
/* Refuses new operations (-ESHUTDOWN), wakes blocked waits, drops every VM handle without
 * stopping a VM. */
void manager_shutdown(manager_t *m);
void manager_free(manager_t *m);
/* Tells the manager that the VM of sandbox sid ended on its own (callable from any thread; the
 * work happens on the manager's worker): the sandbox is marked stopped and an event sent. */
void manager_vm_exited(manager_t *m, const char *sid);
/* Hypervisor names this manager can boot with. */
json_t *manager_hypervisors(manager_t *m);

typedef enum sandbox_action {
        SANDBOX_START,
        SANDBOX_STOP,
        SANDBOX_PAUSE,
        SANDBOX_RESUME,
        SANDBOX_RELEASE,
} sandbox_action_t;

typedef enum container_action {
        CONTAINER_START,
        CONTAINER_STOP,
        CONTAINER_PAUSE,
        CONTAINER_RESUME,
} container_action_t;

typedef struct action_options {
        bool force;
        int timeout_sec; /* <0: the default */
} action_options_t;

/* Sandboxes. Results are new references. */
int manager_sandbox_create(manager_t *m, json_t *config, bool start, const kd_caller_t *who, kd_error_t *e,
                           json_t **ret_status);
int manager_sandbox_list(manager_t *m, json_t **ret_list);
int manager_sandbox_status(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_status);
int manager_sandbox_action(manager_t *m, const char *sid, sandbox_action_t action, const action_options_t *opts,
                           const kd_caller_t *who, kd_error_t *e, json_t **ret_status);
int manager_sandbox_delete(manager_t *m, const char *sid, bool force, const kd_caller_t *who, kd_error_t *e);
int manager_sandbox_stats(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_stats);
/* patch NULL: returns the annotations; else merges (null values delete) and returns the result. */
int manager_sandbox_annotations(manager_t *m, const char *sid, json_t *patch, const kd_caller_t *who, kd_error_t *e,
                                json_t **ret_annotations);

/* Containers. */
int manager_container_list(manager_t *m, const char *sid, kd_error_t *e, json_t **ret_list);
int manager_container_create(manager_t *m, const char *sid, json_t *config, const kd_caller_t *who, kd_error_t *e,
                             json_t **ret_status);
int manager_container_status(manager_t *m, const char *sid, const char *cid, kd_error_t *e, json_t **ret_status);
int manager_container_action(manager_t *m, const char *sid, const char *cid, container_action_t action,
                             const action_options_t *opts, const kd_caller_t *who, kd_error_t *e,
                             json_t **ret_status);
int manager_container_delete(manager_t *m, const char *sid, const char *cid, bool force, const kd_caller_t *who,
                             kd_error_t *e);
int manager_container_kill(manager_t *m, const char *sid, const char *cid, int signal, bool all,
                           const kd_caller_t *who, kd_error_t *e);
int manager_container_stats(manager_t *m, const char *sid, const char *cid, kd_error_t *e, json_t **ret_stats);
int manager_container_update(manager_t *m, const char *sid, const char *cid, json_t *resources,
                             const kd_caller_t *who, kd_error_t *e, json_t **ret);
/* format "json" → {"Titles","Processes"}; "table" → {"Output": text}. args may be NULL. */
int manager_container_ps(manager_t *m, const char *sid, const char *cid, const char *format, json_t *args,
                         kd_error_t *e, json_t **ret);

/* What the container's own process wrote to stdout and stderr (captured by katad, bounded). */
int manager_container_logs(manager_t *m, const char *sid, const char *cid, kd_error_t *e, char **ret_data,
                           size_t *ret_len);

/* Processes; pid is the container id for the container's own process. */
int manager_process_exec(manager_t *m, const char *sid, const char *cid, json_t *cmd, const kd_caller_t *who,
                         kd_error_t *e, json_t **ret_process);
/* Blocks until the process exits; does not hold up other operations on the sandbox. */
int manager_process_wait(manager_t *m, const char *sid, const char *cid, const char *pid, kd_error_t *e,
                         json_t **ret);
int manager_process_signal(manager_t *m, const char *sid, const char *cid, const char *pid, int signal, bool all,
                           const kd_caller_t *who, kd_error_t *e);
int manager_process_winsize(manager_t *m, const char *sid, const char *cid, const char *pid, unsigned height,
                            unsigned width, kd_error_t *e);
