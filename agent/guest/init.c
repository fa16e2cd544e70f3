/* The agent's duties as PID 1 (see init.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "init.h"
#include "log.h"
#include "macro.h"
#include "util.h"

#define RAMFS_MAGIC_NUMBER 0x858458f6
#define TMPFS_MAGIC_NUMBER 0x01021994
#define NEW_ROOT "/.katad-root"

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* A Debian-kernel initrd lists the modules to load, in order, in /etc/katad-modules. */
static void load_modules(void) {
        _cleanup_free_ char *list = NULL;
        if (read_file("/etc/katad-modules", 1 << 20, &list, NULL) < 0)
                return;
        char *save = NULL;
        for (char *path = strtok_r(list, "\n", &save); path; path = strtok_r(NULL, "\n", &save)) {
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
                        log_warning_errno(errno, "Cannot load module %s: %m", path);
        }
}

/* pivot_root cannot leave the initramfs (it is no mount with a parent), and a container whose root
 * is only chroot()ed over it could climb back into the VM. So the agent moves to a tmpfs root
 * first, as switch_root does, and empties the initramfs below it. */
static int leave_initramfs(void) {
        struct statfs sf;
        if (statfs("/", &sf) < 0)
                return -errno;
        if ((unsigned long) sf.f_type != RAMFS_MAGIC_NUMBER && (unsigned long) sf.f_type != TMPFS_MAGIC_NUMBER)
                return 0;
        if (mkdir(NEW_ROOT, 0755) < 0 && errno != EEXIST)
                return -errno;
        if (mount("tmpfs", NEW_ROOT, "tmpfs", 0, "mode=0755") < 0)
                return -errno;
        DIR *d = opendir("/");
        if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (streq(de->d_name, ".") || streq(de->d_name, "..") || streq(de->d_name, &NEW_ROOT[1]))
                                continue;
                        char path[PATH_MAX];
                        snprintf(path, sizeof path, "/%s", de->d_name);
                        rm_rf(path);
                }
                closedir(d);
        }
        if (chdir(NEW_ROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
                return -errno;
        return 1;
}

static int mount_one(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
        int r = mkdir_p(target, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", target);
        if (mount(source, target, type, flags, data) < 0 && errno != EBUSY)
                return log_error_errno(errno, "Cannot mount %s on %s: %m", type, target);
        return 0;
}

static void loopback_up(void) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = { 0 };
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
                log_warning_errno(errno, "Cannot read the flags of lo: %m");
                return;
        }
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                log_warning_errno(errno, "Cannot bring lo up: %m");
}

static void ensure_stdio(void) {
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0) {
                        int c = open("/dev/console", O_RDWR | O_NOCTTY);
                        if (c < 0)
                                c = open("/dev/null", O_RDWR);
                        if (c >= 0 && c != fd) {
                                dup2(c, fd);
                                close(c);
                        }
                }
}

int init_system(bool *cgroups) {
        ensure_stdio();
        load_modules();
        int r = leave_initramfs();
        if (r < 0)
                log_warning_errno(r, "Cannot move off the initramfs; containers will fail to pivot_root: %m");
        if ((r = mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0 ||
            (r = mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) < 0 ||
            (r = mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755")) < 0 ||
            (r = mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                           "newinstance,ptmxmode=0666,mode=0620")) < 0 ||
            (r = mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")) < 0 ||
            (r = mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")) < 0 ||
            (r = mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")) < 0)
                return r;
        ensure_stdio();
        if (symlink("pts/ptmx", "/dev/ptmx") < 0 && errno != EEXIST)
                log_debug_errno(errno, "Cannot link /dev/ptmx: %m");
        if (mount_one("cgroup2", CGROUP_MOUNT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
            cgroup_setup() < 0) {
                log_warning("Running without cgroups: no limits, pause, statistics or OOM events");
                *cgroups = false;
        } else
                *cgroups = true;
        loopback_up();
        setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
        return 0;
}

bool init_debug_requested(void) {
        _cleanup_free_ char *cmdline = NULL;
        if (read_file("/proc/cmdline", 64 * 1024, &cmdline, NULL) < 0)
                return false;
        char *save = NULL;
        for (char *w = strtok_r(cmdline, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
                if (streq(w, "katad.debug") || streq(w, "katad.debug=1"))
                        return true;
        return false;
}

int init_find_port(const char *name, int timeout_ms, char **ret) {
        int64_t deadline = now_monotonic_ns() + (int64_t) timeout_ms * 1000000;
        for (;;) {
                DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *de;
                while (d && (de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        char path[PATH_MAX];
                        _cleanup_free_ char *value = NULL;
                        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", de->d_name);
                        if (read_file(path, 256, &value, NULL) < 0)
                                continue;
                        value[strcspn(value, "\n")] = 0;
                        if (!streq(value, name))
                                continue;
                        snprintf(path, sizeof path, "/dev/%s", de->d_name);
                        if (access(path, F_OK) < 0)
                                continue; /* devtmpfs has not made the node yet */
                        closedir(d);
                        *ret = strdup(path);
                        return *ret ? 0 : -ENOMEM;
                }
                if (d)
                        closedir(d);
                if (now_monotonic_ns() > deadline)
                        return -ENODEV;
                sleep_ms(10);
        }
}

int init_mount_share(void) {
        int r = mkdir_p(SHARE_DIR, 0755);
        if (r < 0)
                return r;
        /* cache=none: the host writes into the share (bind mounts of new containers) while the
         * VM runs, and the guest must see that at once. */
        static const char *const tags[] = { "katad", "katad-share" };
        for (size_t i = 0; i < ELEMENTSOF(tags); i++) {
                if (mount(tags[i], SHARE_DIR, "9p", MS_NOSUID | MS_NODEV,
                          "trans=virtio,version=9p2000.L,msize=512000,cache=none,access=client") == 0) {
                        log_info("Mounted the sandbox share (tag %s) on %s", tags[i], SHARE_DIR);
                        return 1;
                }
                if (errno != ENOENT && errno != ENODEV)
                        return log_warning_errno(errno, "Cannot mount the 9p share %s: %m", tags[i]);
        }
        log_info("No sandbox share");
        return 0;
}

void init_poweroff(void) {
        kill(-1, SIGKILL);
        int64_t deadline = now_monotonic_ns() + 2000LL * 1000000;
        while (now_monotonic_ns() < deadline) {
                pid_t pid = waitpid(-1, NULL, WNOHANG);
                if (pid < 0 && errno == ECHILD)
                        break;
                if (pid <= 0)
                        sleep_ms(10);
        }
        sync();
        reboot(RB_AUTOBOOT);
        _exit(1); /* PID 1 exiting panics the kernel, which with panic=-1 reboots too */
}
