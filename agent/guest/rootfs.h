/* A container's filesystem view, built by its init process in its new mount namespace before
 * pivot_root: the rootfs bind, /proc, /sys, a minimal /dev, the requested mounts and device
 * nodes. Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT), so symlinks in
 * an image cannot point a mount outside the container. Runs only in the forked child. */
#pragma once

#include <stdbool.h>

#include "spec.h"

/* Sets up the mounts and pivots into the rootfs; with a terminal it creates /dev/console as a
 * mount point. On failure error (SPEC_ERROR_MAX bytes) says what failed. */
int rootfs_setup(const container_spec_t *spec, bool terminal, char *error);
/* Makes / read-only (after every mount below it is in place). */
int rootfs_make_readonly(char *error);
/* Bind-mounts the terminal at path (a /dev/pts/N) over /dev/console. */
int rootfs_bind_console(const char *pts_path, char *error);
