/* The sandbox share: bind mounts of containers' host paths into the 9p-exported directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "share.h"
#include "types.h"
#include "util.h"

/* Unmounts every mount point at or below dir, deepest first, without following symlinks. */
static int umount_below(const char *dir) {
        size_t dlen = strlen(dir);
        for (int pass = 0; pass < 64; pass++) {
                FILE *f = fopen("/proc/self/mountinfo", "re");
                if (!f)
                        return -errno;
                char line[8192], deepest[PATH_MAX] = "";
                while (fgets(line, sizeof line, f)) {
                        char mp[PATH_MAX];
                        /* field 5 is the mount point (octal escapes for spaces; ours have none) */
                        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
                                continue;
                        if (strncmp(mp, dir, dlen) == 0 && (mp[dlen] == 0 || mp[dlen] == '/') &&
                            strlen(mp) >= strlen(deepest))
                                snprintf(deepest, sizeof deepest, "%s", mp);
                }
                fclose(f);
                if (!deepest[0])
                        return 0;
                if (umount2(deepest, MNT_DETACH) < 0)
                        return log_error_errno(errno, "Failed to unmount %s: %m", deepest);
        }
        return -EBUSY;
}

static bool is_mount_point(const char *path) {
        FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return false;
        char line[8192], mp[PATH_MAX];
        bool found = false;
        while (!found && fgets(line, sizeof line, f))
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && streq(mp, path))
                        found = true;
        fclose(f);
        return found;
}

int share_setup(const char *share_dir) {
        int r = mkdir_p(share_dir, 0700);
        if (r < 0)
                return r;
        if (is_mount_point(share_dir))
                return 0;
        if (mount(share_dir, share_dir, NULL, MS_BIND, NULL) < 0)
                return log_error_errno(errno, "Failed to bind %s onto itself: %m", share_dir);
        if (mount(NULL, share_dir, NULL, MS_PRIVATE | MS_REC, NULL) < 0) {
                r = log_error_errno(errno, "Failed to make %s private: %m", share_dir);
                umount2(share_dir, MNT_DETACH);
                return r;
        }
        return 0;
}

int share_teardown(const char *share_dir) {
        if (access(share_dir, F_OK) < 0)
                return 0;
        int r = umount_below(share_dir);
        if (r < 0)
                return r;
        return rm_rf(share_dir);
}

/* Binds source at target (a directory, or a file when source is one). */
static int bind(const char *source, const char *target, bool read_only) {
        struct stat st;
        if (stat(source, &st) < 0)
                return log_error_errno(errno, "Cannot share %s: %m", source);
        int r;
        if (S_ISDIR(st.st_mode))
                r = mkdir_p(target, 0755);
        else {
                _cleanup_free_ char *parent = strdup(target);
                if (!parent)
                        return -ENOMEM;
                *strrchr(parent, '/') = 0;
                r = mkdir_p(parent, 0755);
                if (r >= 0) {
                        int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                        if (fd < 0)
                                r = -errno;
                        else
                                close(fd);
                }
        }
        if (r < 0)
                return r;
        if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0)
                return log_error_errno(errno, "Failed to bind %s at %s: %m", source, target);
        if (read_only && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
                r = log_error_errno(errno, "Failed to make %s read-only: %m", target);
                umount2(target, MNT_DETACH);
                return r;
        }
        return 0;
}

static bool option_present(json_t *options, const char *want) {
        size_t i;
        json_t *o;
        json_array_foreach(options, i, o) if (json_is_string(o) && streq(json_string_value(o), want)) return true;
        return false;
}

int share_container(const char *share_dir, const char *cid, json_t *config, json_t **ret_guest_config,
                    char **ret_guest_rootfs) {
        const char *rootfs = rootfs_path(config);
        if (strempty(rootfs))
                return -EINVAL;
        char host[PATH_MAX], guest[PATH_MAX];
        snprintf(host, sizeof host, "%s/%s/rootfs", share_dir, cid);
        _cleanup_json_ json_t *copy = json_deep_copy(config);
        if (!copy)
                return -ENOMEM;
        int r = bind(rootfs, host, json_get_bool(config, "ReadonlyRootfs", false));
        if (r < 0)
                goto fail;
        size_t i;
        json_t *m;
        json_array_foreach(json_get_array(copy, "Mounts"), i, m) {
                const char *type = json_get_string(m, "Type");
                const char *source = json_get_string(m, "Source");
                bool is_bind = (type && streq(type, "bind")) || option_present(json_get_array(m, "Options"), "bind") ||
                               option_present(json_get_array(m, "Options"), "rbind");
                if (!is_bind)
                        continue;
                if (!path_is_safe_absolute(source)) {
                        r = log_error_errno(EINVAL, "Mount source %s is not a safe absolute path", source ? source : "");
                        goto fail;
                }
                snprintf(host, sizeof host, "%s/%s/mounts/%zu", share_dir, cid, i);
                r = bind(source, host, json_get_bool(m, "ReadOnly", false) ||
                                               option_present(json_get_array(m, "Options"), "ro"));
                if (r < 0)
                        goto fail;
                snprintf(guest, sizeof guest, "%s/%s/mounts/%zu", SHARE_GUEST_ROOT, cid, i);
                json_object_set_new(m, "Source", json_string(guest));
        }
        snprintf(guest, sizeof guest, "%s/%s/rootfs", SHARE_GUEST_ROOT, cid);
        char *g = strdup(guest);
        if (!g) {
                r = -ENOMEM;
                goto fail;
        }
        *ret_guest_rootfs = g;
        *ret_guest_config = TAKE_PTR(copy);
        return 0;
fail:
        unshare_container(share_dir, cid);
        return r;
}

int unshare_container(const char *share_dir, const char *cid) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", share_dir, cid);
        if (access(dir, F_OK) < 0)
                return 0;
        int r = umount_below(dir);
        if (r < 0)
                return r;
        return rm_rf(dir);
}
