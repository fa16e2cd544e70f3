/* The guest's containers and processes: the implementation of every RPC (guest_ops_t) on top of
 * namespaces, cgroups and the stdio streams. One object, owned by main, passed to every callback.
 *
 * A container is a process tree: its init (forked into a new pid namespace, with its own mount,
 * uts and ipc namespaces and rootfs) and the processes exec'd into it. Processes are the agent's
 * direct children, so it reaps them (guest_reap on SIGCHLD) and reports each exit as a
 * process-exit event and to WaitProcess. Exited processes are kept until their container is
 * removed, at most 128 exited execs per container. */
#pragma once

#include <stdbool.h>

#include "loop.h"
#include "rpc.h"
#include "session.h"

typedef struct guest guest_t;

typedef struct guest_options {
        bool cgroups;          /* false: --no-cgroups (agent/guest/README.md says what changes) */
        const char *state_dir; /* the agent's own files (a copy of each container's config) */
} guest_options_t;

int guest_new(loop_t *loop, const guest_options_t *options, guest_t **ret);
/* Connects the guest to the session it serves (events and stdio go there). */
int guest_attach(guest_t *g, session_t *s);
/* The operations to give session_new, with g as their userdata. */
const guest_ops_t *guest_ops(void);
/* Called after the Shutdown RPC was answered. */
void guest_set_shutdown_handler(guest_t *g, void (*fn)(void *userdata), void *userdata);
/* Collects exited children (call on SIGCHLD). */
void guest_reap(guest_t *g);
/* Kills every container process, waits for them (at most timeout_ms) and removes the cgroups. */
void guest_kill_all(guest_t *g, int timeout_ms);
void guest_free(guest_t *g);
