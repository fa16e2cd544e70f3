/* The hypervisor plugin: boots, controls and re-attaches to the VMs that host sandboxes.
 *
 * A vmm_t is one configured hypervisor (qemu, or the mock used by fast tests); a vm_t is one VM.
 * A VM outlives katad: everything needed to find it again is in the JSON returned by
 * vm_get_handle, which the caller stores and later hands to vmm_attach. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/agent.h"

typedef struct vmm vmm_t;
typedef struct vm vm_t;

typedef struct vm_config {
        const char *id;            /* the sandbox id; a valid id, safe as a path component */
        const char *run_dir;       /* per-VM directory for sockets, logs and state (exists) */
        json_t *hypervisor_config; /* virtcontainers HypervisorConfig (borrowed) */
        json_t *annotations;       /* sandbox annotations (borrowed, may be NULL) */
        unsigned vcpus;
        unsigned memory_mib;
} vm_config_t;

/* Options for the mock hypervisor. */
typedef struct vmm_mock_options {
        unsigned boot_delay_ms; /* how long a boot takes; annotations may override per sandbox */
} vmm_mock_options_t;

/* Called (on a vmm-owned thread) when a VM ends without being asked to. */
typedef void (*vmm_exit_cb)(const char *vm_id, void *userdata);

/* Creates the mock hypervisor, keeping VM state under state_dir/mock. */
int vmm_new_mock(const char *state_dir, const vmm_mock_options_t *options, vmm_t **ret);
/* "qemu" or "mock". */
const char *vmm_name(const vmm_t *vmm);
/* True when the VMs of this hypervisor export RUN_DIR/shared to the guest (virtio-9p tag "katad",
 * mounted by the agent at /run/katad/shared): containers' host paths must be bound there. */
bool vmm_shares_files(const vmm_t *vmm);
void vmm_set_exit_handler(vmm_t *vmm, vmm_exit_cb cb, void *userdata);
/* Stops the vmm's own threads; VMs keep running. Accepts NULL. */
void vmm_free(vmm_t *vmm);

/* Boots a VM; returns when its agent answers. */
int vmm_boot(vmm_t *vmm, const vm_config_t *config, vm_t **ret);
/* Re-attaches to a running VM from a stored handle; -ESRCH when the VM is gone. */
int vmm_attach(vmm_t *vmm, const char *id, json_t *handle, vm_t **ret);

/* Boots a VM from a template saved by vm_save_template: the guest's memory and device state are
 * cloned instead of booted. -EOPNOTSUPP where the hypervisor cannot. */
int vmm_boot_from_template(vmm_t *vmm, const char *template_dir, const vm_config_t *config, vm_t **ret);

/* The JSON to store so that vmm_attach can find this VM again (new reference). */
json_t *vm_get_handle(vm_t *vm);
/* Connects to the guest agent; the VM keeps ownership of nothing: the caller closes the agent. */
int vm_connect_agent(vm_t *vm, agent_t **ret);
int vm_pause(vm_t *vm);
int vm_resume(vm_t *vm);
/* VM-level figures: {"MemoryBytes":..,"VCPUs":..,"Pid":..}. */
int vm_stats(vm_t *vm, json_t **ret);
/* Hotplugs a device described by JSON; -EOPNOTSUPP where the hypervisor cannot. */
int vm_hotplug(vm_t *vm, json_t *device, json_t **ret);
/* Saves the paused VM's memory and device state into template_dir (which exists), for
 * vmm_boot_from_template. The VM stays paused. */
int vm_save_template(vm_t *vm, const char *template_dir);
/* Ends the VM and removes everything it left (sockets, state); frees vm. */
int vm_stop(vm_t *vm, bool force);
/* Drops katad's handles; the VM keeps running; frees vm. Accepts NULL. */
void vm_release(vm_t *vm);
