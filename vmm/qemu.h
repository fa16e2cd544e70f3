/* The QEMU hypervisor backend: its options and its constructor. Everything else goes through the
 * generic interface in vmm.h; docs/qemu.md describes the command line, the run directory and the
 * stored handle. */
#pragma once

#include <stdbool.h>

#include "vmm.h"

typedef enum vmm_qemu_accel {
        VMM_QEMU_ACCEL_AUTO, /* KVM when /dev/kvm opens and a probe guest really runs on it; else TCG */
        VMM_QEMU_ACCEL_KVM,
        VMM_QEMU_ACCEL_TCG,
        _VMM_QEMU_ACCEL_MAX,
} vmm_qemu_accel_t;

typedef struct vmm_qemu_options {
        const char *qemu_path;   /* NULL: /usr/bin/qemu-system-x86_64 */
        const char *kernel_path; /* NULL: the first vmlinux found in $KATAD_GUEST_DIR, DATADIR/katad/guest,
                                  * then guest/ beside the running executable (a build tree) */
        const char *initrd_path; /* NULL: initrd.img beside the kernel */
        vmm_qemu_accel_t accel;
        unsigned default_vcpus;      /* for a vm_config_t that says 0; 0 here: 1 */
        unsigned default_memory_mib; /* likewise; 0 here: 256 */
        unsigned hotplug_root_ports; /* PCIe root ports reserved at boot for later hotplug (rp1..rpN) */
        const char *kernel_params;   /* appended to the built-in kernel command line; may be NULL */
        bool debug;                  /* verbose guest console (no "quiet") and QEMU's own logs */
        unsigned boot_timeout_ms;    /* how long the agent may take to answer after QEMU started; 0: 30 s
                                      * under TCG, 10 s under KVM */
        unsigned stop_timeout_ms;    /* how long a graceful stop waits for the guest; 0: 10 s */
} vmm_qemu_options_t;

/* Fills o with the defaults (4 root ports, accel auto, every path NULL). */
void vmm_qemu_options_init(vmm_qemu_options_t *o);
/* "auto", "kvm", "tcg" and back; -EINVAL for anything else. */
int vmm_qemu_accel_from_string(const char *s, vmm_qemu_accel_t *ret);
const char *vmm_qemu_accel_to_string(vmm_qemu_accel_t accel);

/* Creates the QEMU hypervisor (options are copied; NULL means defaults). Fails with -ENOENT when the
 * QEMU binary or the guest kernel cannot be found. The KVM probe of accel=auto runs at the first
 * boot and its answer is kept for the lifetime of the vmm. */
int vmm_new_qemu(const vmm_qemu_options_t *options, vmm_t **ret);
