/* The sandbox share: how containers' host paths reach the guest over virtio-9p.
 *
 * A VM that shares files exports SHARE_DIR (RUN_DIR/sandboxes/SID/shared) as the 9p tag "katad",
 * mounted by the agent at /run/katad/shared. For each container katad bind-mounts its RootFs at
 * SHARE_DIR/CID/rootfs (read-only when ReadonlyRootfs) and the Source of each bind mount at
 * SHARE_DIR/CID/mounts/N, and hands the agent the guest-side paths. */
#pragma once

#include <jansson.h>

#define SHARE_GUEST_ROOT "/run/katad/shared"

/* Prepares SHARE_DIR itself: a private bind mount of itself, so that the container mounts below
 * it do not propagate anywhere else. Idempotent. */
int share_setup(const char *share_dir);
/* Unmounts everything below and at SHARE_DIR and removes it. A missing directory is fine. */
int share_teardown(const char *share_dir);
/* Bind-mounts the container's RootFs and bind-mount sources into the share and returns a copy of
 * config whose bind mounts name guest paths, plus the guest path of the rootfs. Undoes itself on
 * failure. A container without RootFs gets no rootfs (-EINVAL). */
int share_container(const char *share_dir, const char *cid, json_t *config, json_t **ret_guest_config,
                    char **ret_guest_rootfs);
/* Unmounts and removes SHARE_DIR/CID. A missing directory is fine. */
int unshare_container(const char *share_dir, const char *cid);
