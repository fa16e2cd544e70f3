/* Utilities shared by katad, katactl and the guest agent. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "util.h"

bool id_is_valid(const char *s) {
        if (!s || !*s)
                return false;
        size_t n = strlen(s);
        if (n > ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (i == 0 ? !alnum : !(alnum || c == '_' || c == '.' || c == '-'))
                        return false;
        }
        return true;
}

int id_generate(char *ret, size_t size) {
        uint8_t bytes[16];
        if (size < 2 * sizeof bytes + 1)
                return -ENOBUFS;
        if (getrandom(bytes, sizeof bytes, 0) != (ssize_t) sizeof bytes)
                return -errno;
        for (size_t i = 0; i < sizeof bytes; i++)
                sprintf(ret + 2 * i, "%02x", bytes[i]);
        return 0;
}

/* mkdir that accepts an existing directory, but not an existing file of another kind. */
static int mkdir_one(const char *path, mode_t mode) {
        if (mkdir(path, mode) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int mkdir_p(const char *path, mode_t mode) {
        char buf[PATH_MAX];
        if (!path || !*path)
                return -EINVAL;
        if (strlen(path) >= sizeof buf)
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                int r = mkdir_one(buf, mode);
                if (r < 0)
                        return r;
                *p = '/';
        }
        return mkdir_one(buf, mode);
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        char tmp[PATH_MAX];
        if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int) sizeof tmp)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = 0;
        const char *p = data;
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                p += n;
                len -= (size_t) n;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || rename(tmp, path) < 0) {
                r = -errno;
                goto fail;
        }
        return 0;
fail:
        unlink(tmp);
        return r;
}

int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        size_t cap = max < 4096 ? max : 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= max) {
                                /* Full: the file fits only if nothing follows. */
                                char probe;
                                ssize_t n = read(fd, &probe, 1);
                                if (n < 0 && errno == EINTR)
                                        continue;
                                if (n < 0)
                                        return -errno;
                                if (n > 0)
                                        return -EFBIG;
                                break;
                        }
                        cap = cap * 2 > max ? max : cap * 2;
                        char *nb = realloc(buf, cap + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = 0;
        if (ret_len)
                *ret_len = len;
        *ret_data = TAKE_PTR(buf);
        return 0;
}

static int rm_rf_at(int parent_fd, const char *name) {
        struct statx stx;
        if (statx(parent_fd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(stx.stx_mode))
                return unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
        /* Never descend into another mount (a bind-mounted rootfs, say): that would delete what
         * belongs to someone else. The caller unmounts first. */
        if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
                return -EBUSY;
        int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        closedir(d);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int rm_rf(const char *path) {
        return rm_rf_at(AT_FDCWD, path);
}

int64_t now_realtime_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t now_monotonic_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void format_rfc3339(int64_t ns, char *buf, size_t size) {
        /* Floor division, so that times before 1970 have a positive fraction. */
        int64_t sec = ns / 1000000000LL, frac = ns % 1000000000LL;
        if (frac < 0) {
                frac += 1000000000LL;
                sec--;
        }
        time_t t = (time_t) sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        char base[32];
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, size, "%s.%09ldZ", base, (long) frac);
}

/* Reads exactly n decimal digits. */
static bool digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static bool expect(const char **p, char c) {
        if (**p != c)
                return false;
        (*p)++;
        return true;
}

int parse_rfc3339(const char *s, int64_t *ret_ns) {
        static const int days_in_month[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        const char *p = s;
        int year, month, day, hour, minute, second;
        if (!s || !digits(&p, 4, &year) || !expect(&p, '-') || !digits(&p, 2, &month) || !expect(&p, '-') ||
            !digits(&p, 2, &day) || !expect(&p, 'T') || !digits(&p, 2, &hour) ||
            !expect(&p, ':') || !digits(&p, 2, &minute) || !expect(&p, ':') || !digits(&p, 2, &second))
                return -EINVAL;
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        if (month < 1 || month > 12 || day < 1 ||
            day > days_in_month[month - 1] + (month == 2 && leap ? 1 : 0) || hour > 23 || minute > 59 || second > 59)
                return -EINVAL;
        long frac = 0;
        if (*p == '.') {
                int n = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, n++)
                        if (n < 9)
                                frac = frac * 10 + (*p - '0');
                if (n == 0)
                        return -EINVAL;
                for (; n < 9; n++)
                        frac *= 10;
        }
        int64_t offset = 0; /* seconds east of UTC */
        if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (!digits(&p, 2, &oh) || !expect(&p, ':') || !digits(&p, 2, &om) || *p || oh > 23 || om > 59)
                        return -EINVAL;
                offset = sign * (oh * 3600 + om * 60);
        } else if (!streq(p, "Z"))
                return -EINVAL;
        struct tm tm = { .tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day, .tm_hour = hour,
                         .tm_min = minute, .tm_sec = second };
        int64_t sec = (int64_t) timegm(&tm) - offset, ns;
        if (__builtin_mul_overflow(sec, (int64_t) 1000000000, &ns) || __builtin_add_overflow(ns, (int64_t) frac, &ns))
                return -ERANGE;
        *ret_ns = ns;
        return 0;
}

static const char *const signal_names[] = {
        [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",       [SIGQUIT] = "SIGQUIT",   [SIGILL] = "SIGILL",
        [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT",     [SIGBUS] = "SIGBUS",     [SIGFPE] = "SIGFPE",
        [SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1",     [SIGSEGV] = "SIGSEGV",   [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM",     [SIGTERM] = "SIGTERM",   [SIGSTKFLT] = "SIGSTKFLT",
        [SIGCHLD] = "SIGCHLD", [SIGCONT] = "SIGCONT",     [SIGSTOP] = "SIGSTOP",   [SIGTSTP] = "SIGTSTP",
        [SIGTTIN] = "SIGTTIN", [SIGTTOU] = "SIGTTOU",     [SIGURG] = "SIGURG",     [SIGXCPU] = "SIGXCPU",
        [SIGXFSZ] = "SIGXFSZ", [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF",   [SIGWINCH] = "SIGWINCH",
        [SIGIO] = "SIGIO",     [SIGPWR] = "SIGPWR",       [SIGSYS] = "SIGSYS",
};

int signal_from_string(const char *s) {
        uint64_t n;
        if (!s || !*s)
                return -EINVAL;
        if (parse_u64(s, &n) == 0)
                return n >= 1 && n <= 64 ? (int) n : -EINVAL;
        const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
        for (size_t i = 1; i < ELEMENTSOF(signal_names); i++)
                if (signal_names[i] && strcasecmp(name, signal_names[i] + 3) == 0)
                        return (int) i;
        return -EINVAL;
}

const char *signal_to_string(int sig) {
        if (sig <= 0 || (size_t) sig >= ELEMENTSOF(signal_names))
                return NULL;
        return signal_names[sig];
}

int parse_u64(const char *s, uint64_t *ret) {
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        uint64_t v = 0;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int parse_bool(const char *s, bool *ret) {
        if (!s)
                return -EINVAL;
        if (strcasecmp(s, "true") == 0 || streq(s, "1") || strcasecmp(s, "yes") == 0 || strcasecmp(s, "on") == 0)
                *ret = true;
        else if (strcasecmp(s, "false") == 0 || streq(s, "0") || strcasecmp(s, "no") == 0 ||
                 strcasecmp(s, "off") == 0)
                *ret = false;
        else
                return -EINVAL;
        return 0;
}
