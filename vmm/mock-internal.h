/* The mock hypervisor's guest: an in-process stand-in for a VM running the guest agent.
 *
 * Its state lives in a JSON file per VM so that, like a real VM, it outlives katad: a restarted
 * katad re-attaches to it and finds the same containers and processes. Process lifetimes follow
 * a tiny interpreter of Cmd.Args (docs/mock.md); timers run on the mock's libevent loop thread. */
#pragma once

#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/agent.h"
#include "util.h"
#include "vmm-internal.h"

typedef struct mock_guest mock_guest_t;
typedef struct mock_vmm mock_vmm_t;

struct mock_vmm {
        vmm_t base;
        char *state_dir;
        vmm_mock_options_t options;
        struct event_base *loop;
        pthread_t loop_thread;
        bool loop_running;
        pthread_mutex_t lock; /* protects guests */
        mock_guest_t *guests; /* live guests of this process, by id */
};

/* Loads the guest of VM id from its state file, or creates a fresh one when create is set.
 * Returns a new reference. -ESRCH when the state file is gone (the VM is not running). */
int mock_guest_open(mock_vmm_t *vmm, const char *id, bool create, mock_guest_t **ret);
/* Creates the guest of VM id as a copy of the guest state saved at template_path. */
int mock_guest_clone(mock_vmm_t *vmm, const char *id, const char *template_path, mock_guest_t **ret);
/* Writes the guest state to path (a template); the guest must be paused. */
int mock_guest_save_to(mock_guest_t *g, const char *path);
mock_guest_t *mock_guest_ref(mock_guest_t *g);
void mock_guest_unref(mock_guest_t *g);
/* Kills every process, wakes every waiter with -ESHUTDOWN and removes the state file. */
void mock_guest_destroy(mock_guest_t *g);
int mock_guest_set_vm_paused(mock_guest_t *g, bool paused);
int mock_guest_stats(mock_guest_t *g, json_t **ret);
/* A new agent handle talking to this guest. */
int mock_guest_connect(mock_guest_t *g, agent_t **ret);
const char *mock_guest_state_path(mock_guest_t *g);
