/* virtcontainers states and the JSON forms of sandboxes and containers. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

typedef enum vc_state {
        VC_READY,
        VC_RUNNING,
        VC_PAUSED,
        VC_STOPPED,
        _VC_STATE_MAX,
} vc_state_t;

/* "ready", "running", "paused", "stopped". */
const char *vc_state_to_string(vc_state_t s);
/* -EINVAL for anything else. */
int vc_state_from_string(const char *s, vc_state_t *ret);

/* The host path of a ContainerConfig.RootFs (a string, or the Source of a RootFs object). */
const char *rootfs_path(const json_t *container_config);
/* True for an absolute path without "." or ".." components and without repeated slashes. */
bool path_is_safe_absolute(const char *path);
