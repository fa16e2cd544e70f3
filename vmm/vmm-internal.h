/* What a hypervisor backend implements. */
#pragma once

#include "vmm.h"

typedef struct vmm_ops {
        const char *name;
        bool shares_files;
        int (*boot)(vmm_t *vmm, const vm_config_t *config, vm_t **ret);
        int (*attach)(vmm_t *vmm, const char *id, json_t *handle, vm_t **ret);
        int (*boot_from_template)(vmm_t *vmm, const char *template_dir, const vm_config_t *config, vm_t **ret);
        int (*save_template)(vm_t *vm, const char *template_dir);
        json_t *(*get_handle)(vm_t *vm);
        int (*connect_agent)(vm_t *vm, agent_t **ret);
        int (*pause)(vm_t *vm);
        int (*resume)(vm_t *vm);
        int (*stats)(vm_t *vm, json_t **ret);
        int (*hotplug)(vm_t *vm, json_t *device, json_t **ret);
        int (*stop)(vm_t *vm, bool force);
        void (*release)(vm_t *vm);
        void (*free)(vmm_t *vmm);
} vmm_ops_t;

struct vmm {
        const vmm_ops_t *ops;
        vmm_exit_cb on_exit;
        void *exit_userdata;
};

struct vm {
        vmm_t *vmm;
};
