/* A container's filesystem view (see rootfs.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "macro.h"
#include "rootfs.h"

_printf_(3, 4) static int fail(char *error, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        errno = r < 0 ? -r : r;
        vsnprintf(error, SPEC_ERROR_MAX, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}

/* Opens path (absolute, as the container sees it) below rootfd, symlinks resolved inside. */
static int open_in_root(int rootfd, const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        while (*path == '/')
                path++;
        int fd = (int) syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof how);
        return fd < 0 ? -errno : fd;
}

static const char *fd_path(int fd, char buf[32]) {
        snprintf(buf, 32, "/proc/self/fd/%d", fd);
        return buf;
}

/* Returns an O_PATH fd for path inside the root, creating missing directories and, with
 * is_file, an empty file as the last component. */
static int ensure_path(int rootfd, const char *path, bool is_file) {
        int fd = open_in_root(rootfd, path, O_PATH);
        if (fd != -ENOENT)
                return fd;
        char buf[PATH_MAX];
        if (strlen(path) >= sizeof buf)
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *p = buf + 1;; p++) {
                if (*p != '/' && *p != 0)
                        continue;
                bool last = *p == 0;
                char saved = *p;
                *p = 0;
                fd = open_in_root(rootfd, buf, O_PATH);
                if (fd == -ENOENT) {
                        char *slash = strrchr(buf, '/');
                        *slash = 0;
                        _cleanup_close_ int parent =
                                open_in_root(rootfd, slash == buf ? "/" : buf, O_PATH | O_DIRECTORY);
                        *slash = '/';
                        if (parent < 0)
                                return parent;
                        if (last && is_file) {
                                int f = openat(parent, slash + 1, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
                                if (f < 0)
                                        return -errno;
                                close(f);
                        } else if (mkdirat(parent, slash + 1, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        fd = open_in_root(rootfd, buf, O_PATH);
                }
                if (fd < 0)
                        return fd;
                if (last)
                        return fd;
                close(fd);
                *p = saved;
        }
}

static int mount_at(const char *source, int target_fd, const char *type, unsigned long flags, const char *data) {
        char t[32];
        if (mount(source, fd_path(target_fd, t), type, flags, data) < 0)
                return -errno;
        return 0;
}

/* Mounts a filesystem (not a bind) at dest inside the root. */
static int mount_fs(int rootfd, const char *type, const char *dest, unsigned long flags, const char *data,
                    char *error) {
        _cleanup_close_ int fd = ensure_path(rootfd, dest, false);
        if (fd < 0)
                return fail(error, fd, "cannot create the mount point %s: %m", dest);
        int r = mount_at(type, fd, type, flags, data);
        if (r < 0)
                return fail(error, r, "cannot mount %s on %s: %m", type, dest);
        return 0;
}

#define REMOUNT_FLAGS                                                                                                  \
        (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME)

static int bind_mount(int rootfd, const char *source, const char *dest, bool recursive, unsigned long flags,
                      char *error) {
        _cleanup_close_ int src = open(source, O_PATH | O_CLOEXEC);
        if (src < 0)
                return fail(error, -errno, "cannot open the bind source %s: %m", source);
        struct stat st;
        if (fstat(src, &st) < 0)
                return fail(error, -errno, "cannot stat the bind source %s: %m", source);
        _cleanup_close_ int dst = ensure_path(rootfd, dest, !S_ISDIR(st.st_mode));
        if (dst < 0)
                return fail(error, dst, "cannot create the mount point %s: %m", dest);
        char s[32];
        int r = mount_at(fd_path(src, s), dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL);
        if (r < 0)
                return fail(error, r, "cannot bind %s on %s: %m", source, dest);
        if (!(flags & REMOUNT_FLAGS))
                return 0;
        /* The flags apply to the new mount, which a fresh lookup of dest now finds. */
        _cleanup_close_ int top = open_in_root(rootfd, dest, O_PATH);
        if (top < 0)
                return fail(error, top, "cannot open %s: %m", dest);
        r = mount_at(NULL, top, NULL, MS_BIND | MS_REMOUNT | (flags & REMOUNT_FLAGS), NULL);
        if (r < 0)
                return fail(error, r, "cannot set the options of the bind mount %s: %m", dest);
        return 0;
}

static bool has_user_mount(const container_spec_t *spec, const char *dest) {
        for (size_t i = 0; i < spec->n_mounts; i++)
                if (streq(spec->mounts[i].destination, dest))
                        return true;
        return false;
}

static int make_dev(int rootfd, bool terminal, char *error) {
        _cleanup_close_ int dev = open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
        if (dev < 0)
                return fail(error, dev, "cannot open the container's /dev: %m");
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {
                { "null", 1, 3 },   { "zero", 1, 5 },    { "full", 1, 7 },
                { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++)
                if (mknodat(dev, nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) < 0 &&
                    errno != EEXIST)
                        return fail(error, -errno, "cannot create /dev/%s: %m", nodes[i].name);
        static const struct {
                const char *name, *target;
        } links[] = {
                { "ptmx", "pts/ptmx" },          { "fd", "/proc/self/fd" },       { "stdin", "/proc/self/fd/0" },
                { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
        };
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                if (symlinkat(links[i].target, dev, links[i].name) < 0 && errno != EEXIST)
                        return fail(error, -errno, "cannot create /dev/%s: %m", links[i].name);
        if (terminal) {
                int f = openat(dev, "console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0620);
                if (f < 0)
                        return fail(error, -errno, "cannot create /dev/console: %m");
                close(f);
        }
        return 0;
}

/* Hides what a container has no business seeing in the VM's /proc and /sys, as Docker does. */
static int mask_paths(int rootfd, char *error) {
        static const char *const readonly[] = { "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                "/proc/sysrq-trigger" };
        static const char *const masked[] = { "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                                              "/proc/acpi",  "/proc/scsi", "/sys/firmware" };
        int r;
        for (size_t i = 0; i < ELEMENTSOF(readonly); i++) {
                _cleanup_close_ int fd = open_in_root(rootfd, readonly[i], O_PATH | O_NOFOLLOW);
                if (fd == -ENOENT)
                        continue;
                if (fd < 0)
                        return fail(error, fd, "cannot open %s: %m", readonly[i]);
                char p[32];
                if ((r = mount_at(fd_path(fd, p), fd, NULL, MS_BIND, NULL)) < 0)
                        return fail(error, r, "cannot bind %s: %m", readonly[i]);
                _cleanup_close_ int top = open_in_root(rootfd, readonly[i], O_PATH | O_NOFOLLOW);
                if (top < 0 ||
                    (r = mount_at(NULL, top, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  NULL)) < 0)
                        return fail(error, top < 0 ? top : r, "cannot make %s read-only: %m", readonly[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(masked); i++) {
                _cleanup_close_ int fd = open_in_root(rootfd, masked[i], O_PATH | O_NOFOLLOW);
                if (fd == -ENOENT)
                        continue;
                if (fd < 0)
                        return fail(error, fd, "cannot open %s: %m", masked[i]);
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return fail(error, -errno, "cannot stat %s: %m", masked[i]);
                if (S_ISDIR(st.st_mode))
                        r = mount_at("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
                else
                        r = mount_at("/dev/null", fd, NULL, MS_BIND, NULL);
                if (r < 0)
                        return fail(error, r, "cannot mask %s: %m", masked[i]);
        }
        return 0;
}

static int make_device(int rootfd, const device_spec_t *d, char *error) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", d->path);
        char *slash = strrchr(dir, '/');
        *slash = 0;
        const char *name = slash + 1;
        _cleanup_close_ int parent = ensure_path(rootfd, dir, false);
        if (parent < 0)
                return fail(error, parent, "cannot create the directory of %s: %m", d->path);
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
                return fail(error, -errno, "cannot replace %s: %m", d->path);
        if (mknodat(parent, name, d->type | d->mode, d->type == S_IFIFO ? 0 : makedev(d->major, d->minor)) < 0)
                return fail(error, -errno, "cannot create the device %s: %m", d->path);
        if (fchownat(parent, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(parent, name, d->mode, 0) < 0)
                return fail(error, -errno, "cannot set the owner and mode of %s: %m", d->path);
        return 0;
}

static int user_mount(int rootfd, const mount_spec_t *m, char *error) {
        static const char *const types[] = {
                [MOUNT_TMPFS] = "tmpfs",   [MOUNT_PROC] = "proc",     [MOUNT_SYSFS] = "sysfs",
                [MOUNT_DEVPTS] = "devpts", [MOUNT_MQUEUE] = "mqueue",
        };
        if (m->kind == MOUNT_BIND)
                return bind_mount(rootfd, m->source, m->destination, m->recursive, m->flags, error);
        return mount_fs(rootfd, types[m->kind], m->destination, m->flags, m->data, error);
}

int rootfs_setup(const container_spec_t *spec, bool terminal, char *error) {
        int r;
        /* Nothing done here may reach the VM's (or in test mode the host's) mount namespace. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return fail(error, -errno, "cannot make the mounts private: %m");
        struct stat st;
        if (stat(spec->rootfs, &st) < 0)
                return fail(error, -errno, "rootfs %s: %m", spec->rootfs);
        if (!S_ISDIR(st.st_mode))
                return fail(error, -ENOTDIR, "rootfs %s is not a directory", spec->rootfs);
        if (mount(spec->rootfs, spec->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
                return fail(error, -errno, "cannot bind the rootfs %s: %m", spec->rootfs);
        _cleanup_close_ int rootfd = open(spec->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return fail(error, -errno, "cannot open the rootfs %s: %m", spec->rootfs);

        const unsigned long secure = MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (!has_user_mount(spec, "/proc")) {
                if ((r = mount_fs(rootfd, "proc", "/proc", secure, NULL, error)) < 0)
                        return r;
        }
        if (!has_user_mount(spec, "/sys") &&
            (r = mount_fs(rootfd, "sysfs", "/sys", secure | MS_RDONLY, NULL, error)) < 0)
                return r;
        if (!has_user_mount(spec, "/dev")) {
                if ((r = mount_fs(rootfd, "tmpfs", "/dev", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k", error)) <
                    0)
                        return r;
                if ((r = make_dev(rootfd, terminal, error)) < 0)
                        return r;
        }
        if (!has_user_mount(spec, "/dev/pts") && (r = mount_fs(rootfd, "devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC,
                                                               "newinstance,ptmxmode=0666,mode=0620", error)) < 0)
                return r;
        if (!has_user_mount(spec, "/dev/shm") &&
            (r = mount_fs(rootfd, "tmpfs", "/dev/shm", secure, "mode=1777,size=65536k", error)) < 0)
                return r;
        if (!has_user_mount(spec, "/dev/mqueue") &&
            (r = mount_fs(rootfd, "mqueue", "/dev/mqueue", secure, NULL, error)) < 0)
                return r;
        if (!has_user_mount(spec, "/proc") && (r = mask_paths(rootfd, error)) < 0)
                return r;
        for (size_t i = 0; i < spec->n_mounts; i++)
                if ((r = user_mount(rootfd, &spec->mounts[i], error)) < 0)
                        return r;
        for (size_t i = 0; i < spec->n_devices; i++)
                if ((r = make_device(rootfd, &spec->devices[i], error)) < 0)
                        return r;

        /* pivot_root(".", ".") stacks the old root on the new one; unmounting "." then drops it,
         * with every VM mount below it, from this namespace. */
        if (fchdir(rootfd) < 0)
                return fail(error, -errno, "cannot enter the rootfs: %m");
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return fail(error, -errno, "pivot_root into %s failed: %m", spec->rootfs);
        if (umount2(".", MNT_DETACH) < 0)
                return fail(error, -errno, "cannot detach the old root: %m");
        if (chdir("/") < 0)
                return fail(error, -errno, "chdir / failed: %m");
        return 0;
}

int rootfs_make_readonly(char *error) {
        struct statvfs sv;
        if (statvfs("/", &sv) < 0)
                return fail(error, -errno, "statvfs / failed: %m");
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY;
        if (sv.f_flag & ST_NOSUID)
                flags |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
                flags |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                flags |= MS_NOEXEC;
        if (mount(NULL, "/", NULL, flags, NULL) < 0)
                return fail(error, -errno, "cannot make the rootfs read-only: %m");
        return 0;
}

int rootfs_bind_console(const char *pts_path, char *error) {
        if (mount(pts_path, "/dev/console", NULL, MS_BIND, NULL) < 0)
                return fail(error, -errno, "cannot bind %s on /dev/console: %m", pts_path);
        return 0;
}
