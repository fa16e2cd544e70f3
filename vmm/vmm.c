/* The hypervisor plugin: dispatch to the backend that owns the VM. */
#include <errno.h>
#include <stddef.h>

#include "vmm-internal.h"

const char *vmm_name(const vmm_t *vmm) {
        return vmm->ops->name;
}

bool vmm_shares_files(const vmm_t *vmm) {
        return vmm->ops->shares_files;
}

void vmm_set_exit_handler(vmm_t *vmm, vmm_exit_cb cb, void *userdata) {
        vmm->on_exit = cb;
        vmm->exit_userdata = userdata;
}

void vmm_free(vmm_t *vmm) {
        if (vmm)
                vmm->ops->free(vmm);
}

int vmm_boot(vmm_t *vmm, const vm_config_t *config, vm_t **ret) {
        return vmm->ops->boot(vmm, config, ret);
}

int vmm_attach(vmm_t *vmm, const char *id, json_t *handle, vm_t **ret) {
        return vmm->ops->attach(vmm, id, handle, ret);
}

int vmm_boot_from_template(vmm_t *vmm, const char *template_dir, const vm_config_t *config, vm_t **ret) {
        if (!vmm->ops->boot_from_template)
                return -EOPNOTSUPP;
        return vmm->ops->boot_from_template(vmm, template_dir, config, ret);
}

int vm_save_template(vm_t *vm, const char *template_dir) {
        if (!vm->vmm->ops->save_template)
                return -EOPNOTSUPP;
        return vm->vmm->ops->save_template(vm, template_dir);
}

json_t *vm_get_handle(vm_t *vm) {
        return vm->vmm->ops->get_handle(vm);
}

int vm_connect_agent(vm_t *vm, agent_t **ret) {
        return vm->vmm->ops->connect_agent(vm, ret);
}

int vm_pause(vm_t *vm) {
        return vm->vmm->ops->pause(vm);
}

int vm_resume(vm_t *vm) {
        return vm->vmm->ops->resume(vm);
}

int vm_stats(vm_t *vm, json_t **ret) {
        return vm->vmm->ops->stats(vm, ret);
}

int vm_hotplug(vm_t *vm, json_t *device, json_t **ret) {
        if (!vm->vmm->ops->hotplug)
                return -EOPNOTSUPP;
        return vm->vmm->ops->hotplug(vm, device, ret);
}

int vm_stop(vm_t *vm, bool force) {
        return vm->vmm->ops->stop(vm, force);
}

void vm_release(vm_t *vm) {
        if (vm)
                vm->vmm->ops->release(vm);
}
