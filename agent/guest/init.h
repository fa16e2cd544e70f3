/* The agent's duties as PID 1 of a katad VM: leave the initramfs for a tmpfs root (so containers
 * can pivot_root away from it), mount the pseudo filesystems and cgroup2, bring lo up, find the
 * agent's virtio-serial port, mount the sandbox share, and power the VM off at the end. */
#pragma once

#include <stdbool.h>

/* Everything up to the port: modules (Debian-kernel initrds), the root switch, the mounts, lo,
 * cgroup2 and its controllers (*cgroups says whether that worked). Returns negative errno on
 * what makes the VM unusable. */
int init_system(bool *cgroups);
/* True when the kernel command line has katad.debug. */
bool init_debug_requested(void);
/* Waits (up to timeout_ms) for the virtio-serial port named name; *ret is "/dev/vportNpM". */
int init_find_port(const char *name, int timeout_ms, char **ret);
/* Mounts the sandbox's 9p share at SHARE_DIR if the VM has one; 0 when there is none. */
int init_mount_share(void);
/* Kills every process, syncs and reboots (QEMU runs with -no-reboot, so this ends the VM). */
_Noreturn void init_poweroff(void);

#define SHARE_DIR "/run/katad/shared"
