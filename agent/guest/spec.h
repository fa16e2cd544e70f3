/* Typed, validated forms of the RPC parameters (docs/agent-protocol.md): a ContainerConfig, a
 * Cmd, LinuxResources, ps(1) arguments. Parsing here is pure (no system calls), so the fuzzer and
 * the RPC layer share it; everything the host sends is checked before it reaches a mount, a path
 * or a system call. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

#define SPEC_ERROR_MAX 256

enum {
        CAP_SET_BOUNDING,
        CAP_SET_EFFECTIVE,
        CAP_SET_INHERITABLE,
        CAP_SET_PERMITTED,
        CAP_SET_AMBIENT,
        _CAP_SET_MAX,
};

/* What a process runs and as whom (virtcontainers Cmd). */
typedef struct process_spec {
        char **args; /* NULL-terminated, at least one */
        char **env;  /* NULL-terminated "VAR=value" */
        char *workdir;
        char *user; /* "", "uid[:gid]" or "name[:group]" */
        char *primary_group;
        char **groups; /* NULL-terminated supplementary groups (names or numbers) */
        bool terminal;
        bool no_new_privileges;
        bool has_capabilities; /* false: the Docker default set */
        uint64_t capabilities[_CAP_SET_MAX];
} process_spec_t;

typedef enum mount_kind {
        MOUNT_BIND,
        MOUNT_TMPFS,
        MOUNT_PROC,
        MOUNT_SYSFS,
        MOUNT_DEVPTS,
        MOUNT_MQUEUE,
} mount_kind_t;

typedef struct mount_spec {
        mount_kind_t kind;
        char *source;        /* bind: an absolute guest path */
        char *destination;   /* absolute, inside the container */
        unsigned long flags; /* MS_RDONLY, MS_NOSUID, ... */
        bool recursive;      /* rbind */
        char *data;          /* filesystem options (size=, mode=, ...) or NULL */
} mount_spec_t;

typedef struct device_spec {
        char *path;
        mode_t type; /* S_IFCHR, S_IFBLK or S_IFIFO */
        unsigned major, minor;
        mode_t mode;
        uid_t uid;
        gid_t gid;
} device_spec_t;

/* OCI LinuxResources, the parts that map to cgroup v2 files. */
typedef struct resources_spec {
        bool has_memory_limit, has_memory_reservation, has_memory_swap;
        int64_t memory_limit, memory_reservation, memory_swap;
        bool has_cpu_shares, has_cpu_quota, has_cpu_period;
        uint64_t cpu_shares, cpu_period;
        int64_t cpu_quota;
        char *cpus, *mems; /* NULL when absent */
        bool has_pids_limit;
        int64_t pids_limit;
} resources_spec_t;

typedef struct container_spec {
        char id[ID_MAX + 1];
        char sandbox_id[ID_MAX + 1];
        char *rootfs;
        char *hostname;
        bool readonly_rootfs;
        process_spec_t process;
        mount_spec_t *mounts;
        size_t n_mounts;
        device_spec_t *devices;
        size_t n_devices;
        resources_spec_t resources;
        json_t *config; /* the Config object as received */
} container_spec_t;

typedef enum ps_field {
        PS_PID,
        PS_PPID,
        PS_USER,
        PS_UID,
        PS_GID,
        PS_COMM,
        PS_ARGS,
        PS_CMD,
        PS_STAT,
        PS_RSS,
        PS_VSZ,
        PS_TIME,
        PS_ETIME,
        PS_C,
        PS_STIME,
        PS_TTY,
        _PS_FIELD_MAX,
} ps_field_t;

#define PS_COLUMNS_MAX 32

typedef struct ps_spec {
        bool table; /* Format "table" rather than "json" */
        size_t n_columns;
        ps_field_t fields[PS_COLUMNS_MAX];
        char titles[PS_COLUMNS_MAX][32];
} ps_spec_t;

/* Each parser returns 0, or -EINVAL (or -ENOMEM) with a message in error (SPEC_ERROR_MAX bytes). */
int spec_parse_container(const json_t *params, container_spec_t **ret, char *error);
int spec_parse_process(const json_t *cmd, process_spec_t *ret, char *error);
int spec_parse_resources(const json_t *resources, resources_spec_t *ret, char *error);
int spec_parse_ps(const json_t *format, const json_t *args, ps_spec_t *ret, char *error);

void container_spec_free(container_spec_t *spec);
void process_spec_done(process_spec_t *p);
void resources_spec_done(resources_spec_t *r);

/* True for an absolute path without "." or ".." components, NUL-free, shorter than PATH_MAX. */
bool spec_path_is_safe(const char *path);
/* The capability number for "CAP_SYS_ADMIN" or "SYS_ADMIN" (any case); -EINVAL when unknown. */
int capability_from_name(const char *name);
const char *capability_to_name(int cap);
/* The highest capability number known here. */
#define CAPABILITY_LAST 40
/* The capabilities Docker grants by default (bounding, effective, permitted). */
uint64_t capability_default_set(void);
/* The title ps(1) prints for a field. */
const char *ps_field_title(ps_field_t f);
