/* virtcontainers states and small helpers on their JSON forms. */
#include <errno.h>
#include <string.h>

#include "json-util.h"
#include "types.h"

static const char *const state_names[_VC_STATE_MAX] = {
        [VC_READY] = "ready",
        [VC_RUNNING] = "running",
        [VC_PAUSED] = "paused",
        [VC_STOPPED] = "stopped",
};

const char *vc_state_to_string(vc_state_t s) {
        return s < _VC_STATE_MAX ? state_names[s] : "unknown";
}

int vc_state_from_string(const char *s, vc_state_t *ret) {
        for (int i = 0; s && i < _VC_STATE_MAX; i++)
                if (streq(s, state_names[i])) {
                        *ret = (vc_state_t) i;
                        return 0;
                }
        return -EINVAL;
}

const char *rootfs_path(const json_t *config) {
        json_t *r = json_object_get(config, "RootFs");
        if (json_is_string(r))
                return json_string_value(r);
        return json_get_string(r, "Source");
}

bool path_is_safe_absolute(const char *path) {
        if (!path || path[0] != '/' || strstr(path, "//"))
                return false;
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *end = strchrnul(p, '/');
                size_t n = (size_t) (end - p);
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                if (*end == '/' && end[1] == '/')
                        return false;
                p = end;
        }
        return true;
}
