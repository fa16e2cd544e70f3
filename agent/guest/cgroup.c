/* cgroup v2 for the guest's containers (see cgroup.h). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "json-util.h"
#include "log.h"
#include "macro.h"

static int write_string(const char *dir, const char *file, const char *value) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int) sizeof path)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t len = strlen(value);
        ssize_t n = write(fd, value, len);
        if (n < 0)
                return -errno;
        return (size_t) n == len ? 0 : -EIO;
}

static int read_string(const char *dir, const char *file, char **ret) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int) sizeof path)
                return -ENAMETOOLONG;
        return read_file(path, 1 << 20, ret, NULL);
}

static int enable_controllers(const char *dir) {
        static const char *const controllers[] = { "cpu", "memory", "pids", "cpuset", "io" };
        for (size_t i = 0; i < ELEMENTSOF(controllers); i++) {
                char value[32];
                snprintf(value, sizeof value, "+%s", controllers[i]);
                int r = write_string(dir, "cgroup.subtree_control", value);
                if (r < 0)
                        log_warning_errno(r, "Cannot enable the %s controller in %s: %m", controllers[i], dir);
        }
        return 0;
}

int cgroup_setup(void) {
        enable_controllers(CGROUP_MOUNT);
        if (mkdir(CGROUP_KATAD, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s: %m", CGROUP_KATAD);
        return enable_controllers(CGROUP_KATAD);
}

int cgroup_create(const char *cid, char **ret_path) {
        char *path;
        if (asprintf(&path, "%s/%s", CGROUP_KATAD, cid) < 0)
                return -ENOMEM;
        if (mkdir(path, 0755) < 0) {
                int r = -errno;
                free(path);
                return r;
        }
        *ret_path = path;
        return 0;
}

int cgroup_add_pid(const char *path, pid_t pid) {
        char value[32];
        snprintf(value, sizeof value, "%d", (int) pid);
        return write_string(path, "cgroup.procs", value);
}

int cgroup_remove(const char *path) {
        if (rmdir(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int cgroup_set_frozen(const char *path, bool frozen) {
        return write_string(path, "cgroup.freeze", frozen ? "1" : "0");
}

/* The value of "key N" in a flat-keyed file such as cgroup.events or memory.events. */
static int read_keyed(const char *dir, const char *file, const char *key, uint64_t *ret) {
        _cleanup_free_ char *text = NULL;
        int r = read_string(dir, file, &text);
        if (r < 0)
                return r;
        size_t klen = strlen(key);
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
                        return parse_u64(line + klen + 1, ret) < 0 ? -EBADMSG : 0;
                line = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

int cgroup_is_frozen(const char *path) {
        uint64_t v;
        int r = read_keyed(path, "cgroup.events", "frozen", &v);
        return r < 0 ? r : v != 0;
}

int cgroup_get_pids(const char *path, pid_t **ret, size_t *ret_n) {
        _cleanup_free_ char *text = NULL;
        int r = read_string(path, "cgroup.procs", &text);
        if (r < 0)
                return r;
        size_t n = 0, cap = 16;
        pid_t *pids = malloc(cap * sizeof *pids);
        if (!pids)
                return -ENOMEM;
        char *save = NULL;
        for (char *tok = strtok_r(text, "\n", &save); tok; tok = strtok_r(NULL, "\n", &save)) {
                uint64_t v;
                if (parse_u64(tok, &v) < 0 || v == 0 || v > INT_MAX)
                        continue;
                if (n == cap) {
                        pid_t *np = realloc(pids, (cap *= 2) * sizeof *pids);
                        if (!np) {
                                free(pids);
                                return -ENOMEM;
                        }
                        pids = np;
                }
                pids[n++] = (pid_t) v;
        }
        *ret = pids;
        *ret_n = n;
        return 0;
}

int cgroup_oom_kills(const char *path, uint64_t *ret) {
        int r = read_keyed(path, "memory.events", "oom_kill", ret);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        return r;
}

uint64_t cgroup_shares_to_weight(uint64_t shares) {
        if (shares < 2)
                shares = 2;
        if (shares > 262144)
                shares = 262144;
        return 1 + ((shares - 2) * 9999) / 262142;
}

_printf_(4, 5) static int apply_one(const char *path, const char *file, char *error, const char *fmt, ...) {
        char value[128];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(value, sizeof value, fmt, ap);
        va_end(ap);
        int r = write_string(path, file, value);
        if (r < 0)
                snprintf(error, SPEC_ERROR_MAX, "cannot write %s to %s: %s", value, file, strerror(-r));
        return r;
}

int cgroup_apply(const char *path, const resources_spec_t *res, char *error) {
        int r;
        if (res->has_memory_limit && res->memory_limit != 0) {
                if (res->memory_limit < 0)
                        r = apply_one(path, "memory.max", error, "max");
                else
                        r = apply_one(path, "memory.max", error, "%" PRId64, res->memory_limit);
                if (r < 0)
                        return r;
        }
        if (res->has_memory_reservation && res->memory_reservation != 0) {
                if (res->memory_reservation < 0)
                        r = apply_one(path, "memory.low", error, "max");
                else
                        r = apply_one(path, "memory.low", error, "%" PRId64, res->memory_reservation);
                if (r < 0)
                        return r;
        }
        if (res->has_memory_swap && res->memory_swap != 0) {
                /* OCI's swap is memory + swap; cgroup v2 counts swap alone (as runc converts it). */
                char value[32];
                if (res->memory_swap < 0)
                        snprintf(value, sizeof value, "max");
                else if (!res->has_memory_limit || res->memory_limit <= 0) {
                        snprintf(error, SPEC_ERROR_MAX, "memory.swap needs a memory.limit");
                        return -EINVAL;
                } else if (res->memory_swap < res->memory_limit) {
                        snprintf(error, SPEC_ERROR_MAX, "memory.swap must not be below memory.limit");
                        return -EINVAL;
                } else
                        snprintf(value, sizeof value, "%" PRId64, res->memory_swap - res->memory_limit);
                r = write_string(path, "memory.swap.max", value);
                if (r == -ENOENT)
                        log_debug("The kernel has no swap accounting; memory.swap ignored");
                else if (r < 0) {
                        snprintf(error, SPEC_ERROR_MAX, "cannot write %s to memory.swap.max: %s", value, strerror(-r));
                        return r;
                }
        }
        if (res->has_cpu_shares && res->cpu_shares > 0 &&
            (r = apply_one(path, "cpu.weight", error, "%" PRIu64, cgroup_shares_to_weight(res->cpu_shares))) < 0)
                return r;
        if (res->has_cpu_quota || res->has_cpu_period) {
                uint64_t period = res->has_cpu_period && res->cpu_period > 0 ? res->cpu_period : 100000;
                if (res->has_cpu_quota && res->cpu_quota > 0)
                        r = apply_one(path, "cpu.max", error, "%" PRId64 " %" PRIu64, res->cpu_quota, period);
                else
                        r = apply_one(path, "cpu.max", error, "max %" PRIu64, period);
                if (r < 0)
                        return r;
        }
        if (res->cpus && *res->cpus && (r = apply_one(path, "cpuset.cpus", error, "%s", res->cpus)) < 0)
                return r;
        if (res->mems && *res->mems && (r = apply_one(path, "cpuset.mems", error, "%s", res->mems)) < 0)
                return r;
        if (res->has_pids_limit) {
                if (res->pids_limit > 0)
                        r = apply_one(path, "pids.max", error, "%" PRId64, res->pids_limit);
                else
                        r = apply_one(path, "pids.max", error, "max");
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A number file ("max" and absent files read as 0). */
static uint64_t read_number(const char *dir, const char *file) {
        _cleanup_free_ char *text = NULL;
        uint64_t v = 0;
        if (read_string(dir, file, &text) < 0)
                return 0;
        text[strcspn(text, "\n")] = 0;
        return parse_u64(text, &v) < 0 ? 0 : v;
}

static uint64_t keyed(const char *dir, const char *file, const char *key) {
        uint64_t v = 0;
        return read_keyed(dir, file, key, &v) < 0 ? 0 : v;
}

static json_t *memory_stat_map(const char *path) {
        json_t *map = json_object();
        _cleanup_free_ char *text = NULL;
        if (!map || read_string(path, "memory.stat", &text) < 0)
                return map;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *sp = strchr(line, ' ');
                uint64_t v;
                if (!sp)
                        continue;
                *sp = 0;
                if (parse_u64(sp + 1, &v) == 0)
                        json_object_set_new(map, line, json_integer((json_int_t) v));
        }
        return map;
}

static json_t *blkio_stats(const char *path) {
        json_t *bytes = json_array(), *ios = json_array();
        _cleanup_free_ char *text = NULL;
        if (path && bytes && ios && read_string(path, "io.stat", &text) >= 0) {
                char *save = NULL;
                for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        unsigned major, minor;
                        int off = 0;
                        if (sscanf(line, "%u:%u %n", &major, &minor, &off) != 2)
                                continue;
                        char *save2 = NULL;
                        for (char *kv = strtok_r(line + off, " ", &save2); kv; kv = strtok_r(NULL, " ", &save2)) {
                                char *eq = strchr(kv, '=');
                                uint64_t v;
                                if (!eq || parse_u64(eq + 1, &v) < 0)
                                        continue;
                                *eq = 0;
                                json_t *list = kv[1] == 'b' ? bytes : kv[1] == 'i' ? ios : NULL;
                                const char *op = kv[0] == 'r'   ? "Read"
                                                 : kv[0] == 'w' ? "Write"
                                                 : kv[0] == 'd' ? "Discard"
                                                                : NULL;
                                if (!list || !op || (kv[1] == 'b' && !streq(kv + 1, "bytes")) ||
                                    (kv[1] == 'i' && !streq(kv + 1, "ios")))
                                        continue;
                                json_array_append_new(list, json_pack("{s:I, s:I, s:s, s:I}", "Major",
                                                                      (json_int_t) major, "Minor", (json_int_t) minor,
                                                                      "Op", op, "Value", (json_int_t) v));
                        }
                }
        }
        if (json_array_size(bytes) == 0 && json_array_size(ios) == 0) {
                json_decref(bytes);
                json_decref(ios);
                return json_object();
        }
        return json_pack("{s:o, s:o}", "IoServiceBytesRecursive", bytes, "IoServicedRecursive", ios);
}

typedef struct stats_numbers {
        uint64_t usage, user, system, periods, throttled_periods, throttled_ns;
        uint64_t cache, memory, peak, failcnt, limit;
        uint64_t pids, pids_limit;
} stats_numbers_t;

/* The shape of vmm/mock-agent.c's StatsContainer; stat and blkio are consumed. */
static json_t *stats_json(const stats_numbers_t *n, json_t *stat, json_t *blkio) {
        json_t *memory = json_pack("{s:I, s:{s:I, s:I, s:I, s:I}, s:b}", "Cache", (json_int_t) n->cache, "Usage",
                                   "Usage", (json_int_t) n->memory, "MaxUsage", (json_int_t) n->peak, "Failcnt",
                                   (json_int_t) n->failcnt, "Limit", (json_int_t) n->limit, "UseHierarchy", 1);
        if (memory && stat)
                json_object_set(memory, "Stats", stat);
        json_decref(stat);
        return json_pack("{s:{s:{s:I, s:[I], s:I, s:I}, s:{s:I, s:I, s:I}}, s:o, s:{s:I, s:I}, s:o}", "CPUStats",
                         "CPUUsage", "TotalUsage", (json_int_t) n->usage, "PercpuUsage", (json_int_t) n->usage,
                         "UsageInKernelmode", (json_int_t) n->system, "UsageInUsermode", (json_int_t) n->user,
                         "ThrottlingData", "Periods", (json_int_t) n->periods, "ThrottledPeriods",
                         (json_int_t) n->throttled_periods, "ThrottledTime", (json_int_t) n->throttled_ns,
                         "MemoryStats", memory, "PidsStats", "Current", (json_int_t) n->pids, "Limit",
                         (json_int_t) n->pids_limit, "BlkioStats", blkio ? blkio : json_object());
}

json_t *cgroup_stats(const char *path, unsigned live) {
        stats_numbers_t n = { .pids = live };
        if (!path)
                return stats_json(&n, NULL, NULL);
        n.usage = keyed(path, "cpu.stat", "usage_usec") * 1000;
        n.user = keyed(path, "cpu.stat", "user_usec") * 1000;
        n.system = keyed(path, "cpu.stat", "system_usec") * 1000;
        n.periods = keyed(path, "cpu.stat", "nr_periods");
        n.throttled_periods = keyed(path, "cpu.stat", "nr_throttled");
        n.throttled_ns = keyed(path, "cpu.stat", "throttled_usec") * 1000;
        n.memory = read_number(path, "memory.current");
        char peak_path[PATH_MAX];
        snprintf(peak_path, sizeof peak_path, "%s/memory.peak", path);
        n.peak = access(peak_path, F_OK) == 0 ? read_number(path, "memory.peak") : n.memory;
        n.failcnt = keyed(path, "memory.events", "max");
        n.limit = read_number(path, "memory.max");
        n.pids = read_number(path, "pids.current");
        n.pids_limit = read_number(path, "pids.max");
        json_t *stat = memory_stat_map(path);
        n.cache = (uint64_t) json_get_int(stat, "file", 0);
        return stats_json(&n, stat, blkio_stats(path));
}

json_t *network_stats(void) {
        json_t *list = json_array();
        _cleanup_free_ char *text = NULL;
        if (!list || read_file("/proc/net/dev", 1 << 20, &text, NULL) < 0)
                return list;
        char *save = NULL;
        unsigned lineno = 0;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (lineno++ < 2)
                        continue; /* two header lines */
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                char *name = line + strspn(line, " ");
                if (streq(name, "lo"))
                        continue;
                unsigned long long v[16] = { 0 };
                if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                           &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]) != 12)
                        continue;
                json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "Name", name,
                                                      "RxBytes", (json_int_t) v[0], "RxPackets", (json_int_t) v[1],
                                                      "RxErrors", (json_int_t) v[2], "RxDropped", (json_int_t) v[3],
                                                      "TxBytes", (json_int_t) v[8], "TxPackets", (json_int_t) v[9],
                                                      "TxErrors", (json_int_t) v[10], "TxDropped", (json_int_t) v[11]));
        }
        return list;
}
