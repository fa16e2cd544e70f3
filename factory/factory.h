/* The VM factory: where sandboxes get their VMs. Today the "new" source (boot from scratch);
 * the template and cache sources plug in behind the same call. */
#pragma once

#include <jansson.h>

#include "vmm/vmm.h"

typedef struct factory factory_t;

/* A factory over the given hypervisors (borrowed; NULL entries are skipped). */
int factory_new(vmm_t *const *vmms, size_t n_vmms, factory_t **ret);
void factory_free(factory_t *f);
/* The hypervisor called name, or NULL. */
vmm_t *factory_get_vmm(factory_t *f, const char *name);
/* Names of the hypervisors available (new reference). */
json_t *factory_hypervisors(factory_t *f);
/* Gets a VM for a sandbox of the given hypervisor. */
int factory_get_vm(factory_t *f, const char *hypervisor, const vm_config_t *config, vm_t **ret);
