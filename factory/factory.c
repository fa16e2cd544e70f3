/* The VM factory: the "new" source boots every VM from scratch. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "factory.h"
#include "macro.h"

#define FACTORY_MAX_VMMS 4

struct factory {
        vmm_t *vmms[FACTORY_MAX_VMMS];
        size_t n_vmms;
};

int factory_new(vmm_t *const *vmms, size_t n_vmms, factory_t **ret) {
        factory_t *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < n_vmms && f->n_vmms < FACTORY_MAX_VMMS; i++)
                if (vmms[i])
                        f->vmms[f->n_vmms++] = vmms[i];
        *ret = f;
        return 0;
}

void factory_free(factory_t *f) {
        free(f);
}

vmm_t *factory_get_vmm(factory_t *f, const char *name) {
        for (size_t i = 0; i < f->n_vmms; i++)
                if (name && streq(vmm_name(f->vmms[i]), name))
                        return f->vmms[i];
        return NULL;
}

json_t *factory_hypervisors(factory_t *f) {
        json_t *list = json_array();
        for (size_t i = 0; list && i < f->n_vmms; i++)
                json_array_append_new(list, json_string(vmm_name(f->vmms[i])));
        return list;
}

int factory_get_vm(factory_t *f, const char *hypervisor, const vm_config_t *config, vm_t **ret) {
        vmm_t *vmm = factory_get_vmm(f, hypervisor);
        if (!vmm)
                return -EOPNOTSUPP;
        return vmm_boot(vmm, config, ret);
}
