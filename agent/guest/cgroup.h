/* cgroup v2 for the guest's containers: /sys/fs/cgroup/katad/<cid> per container, resources
 * mapped from OCI LinuxResources, freezing, statistics and the OOM counter. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "spec.h"

#define CGROUP_MOUNT "/sys/fs/cgroup"
#define CGROUP_KATAD CGROUP_MOUNT "/katad"

/* Enables the cpu, memory, pids, cpuset and io controllers for the children of the root and of
 * katad/, creating katad/. Controllers the kernel lacks are skipped with a warning. */
int cgroup_setup(void);
/* Creates the container's cgroup; *ret_path is malloc'ed. -EEXIST if it is there already. */
int cgroup_create(const char *cid, char **ret_path);
/* Applies resources; on failure error (SPEC_ERROR_MAX bytes) says which file refused what. */
int cgroup_apply(const char *path, const resources_spec_t *r, char *error);
/* Moves pid into the cgroup. */
int cgroup_add_pid(const char *path, pid_t pid);
/* Removes the (empty) cgroup; a missing one is fine. */
int cgroup_remove(const char *path);
/* Writes cgroup.freeze. */
int cgroup_set_frozen(const char *path, bool frozen);
/* 1 when cgroup.events says "frozen 1", 0 when "frozen 0", negative errno on failure. */
int cgroup_is_frozen(const char *path);
/* The pids in cgroup.procs; *ret is malloc'ed. */
int cgroup_get_pids(const char *path, pid_t **ret, size_t *ret_n);
/* The oom_kill counter of memory.events (0 when the file is missing). */
int cgroup_oom_kills(const char *path, uint64_t *ret);
/* The CgroupStats object of StatsContainer (see vmm/mock-agent.c for the shape); with path NULL,
 * every number is zero except PidsStats.Current = live. */
json_t *cgroup_stats(const char *path, unsigned live);
/* NetworkStats: the VM's interfaces from /proc/net/dev, lo excluded. */
json_t *network_stats(void);
/* cpu.weight for a cpu.shares value, as runc converts it. */
uint64_t cgroup_shares_to_weight(uint64_t shares);
