/* Parsing and validation of the RPC parameters into typed specs (see spec.h). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "json-util.h"
#include "macro.h"
#include "spec.h"

#define ARGS_MAX 4096
#define ENV_MAX 4096
#define GROUPS_MAX 64
#define MOUNTS_MAX 256
#define DEVICES_MAX 256
#define NAME_MAX_LEN 64
#define HOSTNAME_MAX 64
#define CPU_LIST_MAX 256

_printf_(2, 3) static int fail(char *error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(error, SPEC_ERROR_MAX, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static const char *const capability_names[CAPABILITY_LAST + 1] = {
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
};

int capability_from_name(const char *name) {
        if (!name)
                return -EINVAL;
        if (strncasecmp(name, "CAP_", 4) == 0)
                name += 4;
        for (int i = 0; i <= CAPABILITY_LAST; i++)
                if (strcasecmp(name, capability_names[i]) == 0)
                        return i;
        return -EINVAL;
}

const char *capability_to_name(int cap) {
        return cap >= 0 && cap <= CAPABILITY_LAST ? capability_names[cap] : NULL;
}

uint64_t capability_default_set(void) {
        static const char *const defaults[] = {
                "CHOWN",  "DAC_OVERRIDE", "FSETID",  "FOWNER",           "MKNOD",      "NET_RAW", "SETGID",
                "SETUID", "SETFCAP",      "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",    "AUDIT_WRITE",
        };
        uint64_t set = 0;
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
                set |= UINT64_C(1) << capability_from_name(defaults[i]);
        return set;
}

bool spec_path_is_safe(const char *path) {
        if (!path || path[0] != '/' || strlen(path) >= PATH_MAX)
                return false;
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *end = strchrnul(p, '/');
                size_t n = (size_t) (end - p);
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p = end;
        }
        return true;
}

/* A JSON string without embedded NULs, at most max bytes; NULL otherwise. */
static const char *plain_string(const json_t *v, size_t max) {
        if (!json_is_string(v))
                return NULL;
        size_t len = json_string_length(v);
        const char *s = json_string_value(v);
        if (len > max || strlen(s) != len)
                return NULL;
        return s;
}

/* Looks up an optional member: absent and null are the same. Returns the value or NULL. */
static json_t *member(const json_t *obj, const char *key) {
        json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_null(v) ? NULL : v;
}

/* An optional string member; -EINVAL for another type. */
static int opt_string(const json_t *obj, const char *key, size_t max, const char **ret, char *error) {
        json_t *v = member(obj, key);
        if (!v) {
                *ret = NULL;
                return 0;
        }
        const char *s = plain_string(v, max);
        if (!s)
                return fail(error, "%s must be a string of at most %zu bytes", key, max);
        *ret = s;
        return 0;
}

static int opt_bool(const json_t *obj, const char *key, bool *ret, char *error) {
        json_t *v = member(obj, key);
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return fail(error, "%s must be a boolean", key);
        *ret = json_is_true(v);
        return 0;
}

static int opt_int(const json_t *obj, const char *key, int64_t min, int64_t max, bool *ret_has, int64_t *ret,
                   char *error) {
        json_t *v = member(obj, key);
        if (!v)
                return 0;
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return fail(error, "%s must be an integer in [%lld, %lld]", key, (long long) min, (long long) max);
        *ret = json_integer_value(v);
        if (ret_has)
                *ret_has = true;
        return 0;
}

/* Copies an array of strings into a NULL-terminated vector; each string must pass check. */
static int string_array(const json_t *arr, const char *what, size_t max_items, size_t max_len,
                        bool (*check)(const char *), char ***ret, char *error) {
        if (!json_is_array(arr))
                return fail(error, "%s must be an array of strings", what);
        size_t n = json_array_size(arr);
        if (n > max_items)
                return fail(error, "%s has more than %zu entries", what, max_items);
        char **v = calloc(n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *s = plain_string(json_array_get(arr, i), max_len);
                if (!s || (check && !check(s))) {
                        strv_free(v);
                        return fail(error, "%s[%zu] is not valid", what, i);
                }
                v[i] = strdup(s);
                if (!v[i]) {
                        strv_free(v);
                        return -ENOMEM;
                }
        }
        *ret = v;
        return 0;
}

/* User and group names or numbers: [A-Za-z0-9_.-], not starting with '-'. */
static bool name_is_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > NAME_MAX_LEN || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(strchr("_.-", s[i]) || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

static bool user_is_valid(const char *s) {
        if (!*s)
                return true;
        char buf[2 * NAME_MAX_LEN + 2];
        if (strlen(s) >= sizeof buf)
                return false;
        strcpy(buf, s);
        char *colon = strchr(buf, ':');
        if (colon) {
                *colon = 0;
                if (!name_is_valid(colon + 1))
                        return false;
        }
        return name_is_valid(buf);
}

static bool hostname_is_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > HOSTNAME_MAX || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(s[i] == '-' || s[i] == '.' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

static int parse_env(const json_t *envs, char ***ret, char *error) {
        if (!json_is_array(envs))
                return fail(error, "Cmd.Envs must be an array of {Var, Value}");
        size_t n = json_array_size(envs);
        if (n > ENV_MAX)
                return fail(error, "Cmd.Envs has more than %d entries", ENV_MAX);
        char **v = calloc(n + 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        size_t out = 0;
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(envs, i);
                const char *var = plain_string(json_object_get(e, "Var"), 4096);
                json_t *jv = member(e, "Value");
                const char *value = jv ? plain_string(jv, 128 * 1024) : "";
                if (!json_is_object(e) || !var || !*var || strchr(var, '=') || !value) {
                        strv_free(v);
                        return fail(error, "Cmd.Envs[%zu] needs a Var (non-empty, no '=') and a string Value", i);
                }
                /* A later entry for the same variable replaces the earlier one. */
                size_t vlen = strlen(var), k;
                for (k = 0; k < out; k++)
                        if (strncmp(v[k], var, vlen) == 0 && v[k][vlen] == '=')
                                break;
                char *entry;
                if (asprintf(&entry, "%s=%s", var, value) < 0) {
                        strv_free(v);
                        return -ENOMEM;
                }
                if (k < out) {
                        free(v[k]);
                        v[k] = entry;
                } else
                        v[out++] = entry;
        }
        *ret = v;
        return 0;
}

static int parse_capabilities(const json_t *caps, process_spec_t *p, char *error) {
        static const char *const keys[_CAP_SET_MAX] = { "bounding", "effective", "inheritable", "permitted",
                                                        "ambient" };
        if (!json_is_object(caps))
                return fail(error, "Cmd.Capabilities must be an object");
        for (int set = 0; set < _CAP_SET_MAX; set++) {
                json_t *list = member(caps, keys[set]);
                if (!list) {
                        /* Go's encoding/json matches field names case-insensitively; so do we. */
                        char upper[16];
                        snprintf(upper, sizeof upper, "%s", keys[set]);
                        upper[0] = (char) (upper[0] - 'a' + 'A');
                        list = member(caps, upper);
                }
                if (!list)
                        continue;
                if (!json_is_array(list) || json_array_size(list) > 64)
                        return fail(error, "Cmd.Capabilities.%s must be an array of capability names", keys[set]);
                size_t i;
                json_t *name;
                json_array_foreach(list, i, name) {
                        const char *s = plain_string(name, 64);
                        if (s && strcasecmp(s, "ALL") == 0) {
                                p->capabilities[set] = (UINT64_C(1) << (CAPABILITY_LAST + 1)) - 1;
                                continue;
                        }
                        int cap = capability_from_name(s);
                        if (cap < 0)
                                return fail(error, "Cmd.Capabilities.%s[%zu]: unknown capability %s", keys[set], i,
                                            s ? s : "(not a string)");
                        p->capabilities[set] |= UINT64_C(1) << cap;
                }
        }
        p->has_capabilities = true;
        return 0;
}

void process_spec_done(process_spec_t *p) {
        if (!p)
                return;
        strv_free(p->args);
        strv_free(p->env);
        strv_free(p->groups);
        free(p->workdir);
        free(p->user);
        free(p->primary_group);
        *p = (process_spec_t){ 0 };
}

static bool arg_is_valid(const char *s) {
        (void) s;
        return true;
}

static bool workdir_is_valid(const char *s) {
        return !*s || spec_path_is_safe(s);
}

int spec_parse_process(const json_t *cmd, process_spec_t *ret, char *error) {
        process_spec_t p = { 0 };
        int r;
        if (!json_is_object(cmd))
                return fail(error, "Cmd must be an object");
        json_t *args = member(cmd, "Args");
        if (!args || !json_is_array(args) || json_array_size(args) == 0)
                return fail(error, "Cmd.Args must not be empty");
        r = string_array(args, "Cmd.Args", ARGS_MAX, 128 * 1024, arg_is_valid, &p.args, error);
        if (r < 0)
                goto fail;
        if (!*p.args[0]) {
                r = fail(error, "Cmd.Args[0] must not be empty");
                goto fail;
        }
        json_t *envs = member(cmd, "Envs");
        if (envs)
                r = parse_env(envs, &p.env, error);
        else
                r = (p.env = calloc(1, sizeof(char *))) ? 0 : -ENOMEM;
        if (r < 0)
                goto fail;

        const char *workdir = NULL, *user = NULL, *group = NULL;
        if ((r = opt_string(cmd, "WorkDir", PATH_MAX - 1, &workdir, error)) < 0 ||
            (r = opt_string(cmd, "User", 2 * NAME_MAX_LEN + 1, &user, error)) < 0 ||
            (r = opt_string(cmd, "PrimaryGroup", NAME_MAX_LEN, &group, error)) < 0)
                goto fail;
        if (workdir && !workdir_is_valid(workdir)) {
                r = fail(error, "Cmd.WorkDir must be an absolute path without . or .. components");
                goto fail;
        }
        if (user && !user_is_valid(user)) {
                r = fail(error, "Cmd.User must be a user name or uid, optionally with :group or :gid");
                goto fail;
        }
        if (group && *group && !name_is_valid(group)) {
                r = fail(error, "Cmd.PrimaryGroup must be a group name or gid");
                goto fail;
        }
        if ((workdir && *workdir && !(p.workdir = strdup(workdir))) || (user && *user && !(p.user = strdup(user))) ||
            (group && *group && !(p.primary_group = strdup(group)))) {
                r = -ENOMEM;
                goto fail;
        }
        json_t *groups = member(cmd, "SupplementaryGroups");
        if (groups)
                r = string_array(groups, "Cmd.SupplementaryGroups", GROUPS_MAX, NAME_MAX_LEN, name_is_valid, &p.groups,
                                 error);
        else
                r = (p.groups = calloc(1, sizeof(char *))) ? 0 : -ENOMEM;
        if (r < 0)
                goto fail;
        if ((r = opt_bool(cmd, "Interactive", &p.terminal, error)) < 0 ||
            (r = opt_bool(cmd, "NoNewPrivileges", &p.no_new_privileges, error)) < 0)
                goto fail;
        json_t *caps = member(cmd, "Capabilities");
        if (caps && (r = parse_capabilities(caps, &p, error)) < 0)
                goto fail;
        const char *console;
        if ((r = opt_string(cmd, "Console", PATH_MAX, &console, error)) < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        process_spec_done(&p);
        return r;
}

void resources_spec_done(resources_spec_t *r) {
        if (!r)
                return;
        free(r->cpus);
        free(r->mems);
        *r = (resources_spec_t){ 0 };
}

static bool cpu_list_is_valid(const char *s) {
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || *s == ',' || *s == '-'))
                        return false;
        return true;
}

int spec_parse_resources(const json_t *res, resources_spec_t *ret, char *error) {
        resources_spec_t out = { 0 };
        int r = 0;
        if (!json_is_object(res))
                return fail(error, "Resources must be an object");
        json_t *memory = member(res, "memory"), *cpu = member(res, "cpu"), *pids = member(res, "pids");
        if ((memory && !json_is_object(memory)) || (cpu && !json_is_object(cpu)) || (pids && !json_is_object(pids)))
                return fail(error, "Resources.memory, .cpu and .pids must be objects");
        int64_t u;
        if ((r = opt_int(memory, "limit", -1, INT64_MAX, &out.has_memory_limit, &out.memory_limit, error)) < 0 ||
            (r = opt_int(memory, "reservation", -1, INT64_MAX, &out.has_memory_reservation, &out.memory_reservation,
                         error)) < 0 ||
            (r = opt_int(memory, "swap", -1, INT64_MAX, &out.has_memory_swap, &out.memory_swap, error)) < 0 ||
            (r = opt_int(cpu, "shares", 0, 262144, &out.has_cpu_shares, &u, error)) < 0)
                goto fail;
        out.cpu_shares = out.has_cpu_shares ? (uint64_t) u : 0;
        if ((r = opt_int(cpu, "period", 0, 1000000, &out.has_cpu_period, &u, error)) < 0)
                goto fail;
        out.cpu_period = out.has_cpu_period ? (uint64_t) u : 0;
        if ((r = opt_int(cpu, "quota", -1, INT64_MAX / 2, &out.has_cpu_quota, &out.cpu_quota, error)) < 0 ||
            (r = opt_int(pids, "limit", -1, INT64_MAX, &out.has_pids_limit, &out.pids_limit, error)) < 0)
                goto fail;
        const char *cpus = NULL, *mems = NULL;
        if ((r = opt_string(cpu, "cpus", CPU_LIST_MAX, &cpus, error)) < 0 ||
            (r = opt_string(cpu, "mems", CPU_LIST_MAX, &mems, error)) < 0)
                goto fail;
        if ((cpus && !cpu_list_is_valid(cpus)) || (mems && !cpu_list_is_valid(mems))) {
                r = fail(error, "Resources.cpu.cpus and .mems must be lists like 0-3,5");
                goto fail;
        }
        if ((cpus && !(out.cpus = strdup(cpus))) || (mems && !(out.mems = strdup(mems)))) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = out;
        return 0;
fail:
        resources_spec_done(&out);
        return r;
}

static bool option_value_is_valid(const char *s) {
        if (!*s || strlen(s) > 64)
                return false;
        for (; *s; s++)
                if (!(strchr("%._-", *s) || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9')))
                        return false;
        return true;
}

static int append_data(char **data, const char *opt) {
        char *n;
        if (asprintf(&n, "%s%s%s", *data ? *data : "", *data ? "," : "", opt) < 0)
                return -ENOMEM;
        free(*data);
        *data = n;
        return 0;
}

static const struct {
        const char *name;
        unsigned long set, clear;
} mount_flags[] = {
        { "ro", MS_RDONLY, 0 },
        { "rw", 0, MS_RDONLY },
        { "nosuid", MS_NOSUID, 0 },
        { "suid", 0, MS_NOSUID },
        { "nodev", MS_NODEV, 0 },
        { "dev", 0, MS_NODEV },
        { "noexec", MS_NOEXEC, 0 },
        { "exec", 0, MS_NOEXEC },
        { "sync", MS_SYNCHRONOUS, 0 },
        { "async", 0, MS_SYNCHRONOUS },
        { "dirsync", MS_DIRSYNC, 0 },
        { "noatime", MS_NOATIME, 0 },
        { "atime", 0, MS_NOATIME },
        { "nodiratime", MS_NODIRATIME, 0 },
        { "diratime", 0, MS_NODIRATIME },
        { "relatime", MS_RELATIME, 0 },
        { "norelatime", 0, MS_RELATIME },
        { "strictatime", MS_STRICTATIME, 0 },
        { "defaults", 0, 0 },
        /* Propagation: every container mount is private; the request cannot change that. */
        { "private", 0, 0 },
        { "rprivate", 0, 0 },
        { "slave", 0, 0 },
        { "rslave", 0, 0 },
        { "shared", 0, 0 },
        { "rshared", 0, 0 },
        { "unbindable", 0, 0 },
        { "runbindable", 0, 0 },
};

static int parse_mount(const json_t *m, size_t index, mount_spec_t *ret, char *error) {
        mount_spec_t out = { 0 };
        int r;
        if (!json_is_object(m))
                return fail(error, "Mounts[%zu] must be an object", index);
        const char *source = NULL, *dest = NULL, *type = NULL;
        if ((r = opt_string(m, "Source", PATH_MAX - 1, &source, error)) < 0 ||
            (r = opt_string(m, "Destination", PATH_MAX - 1, &dest, error)) < 0 ||
            (r = opt_string(m, "Type", 32, &type, error)) < 0)
                return r;
        if (!dest || !spec_path_is_safe(dest) || streq(dest, "/"))
                return fail(error, "Mounts[%zu].Destination must be an absolute path without . or .. (not /)", index);
        bool bind = false, rbind = false;
        json_t *options = member(m, "Options");
        if (options && (!json_is_array(options) || json_array_size(options) > 64))
                return fail(error, "Mounts[%zu].Options must be an array of strings", index);
        size_t i;
        json_t *o;
        json_array_foreach(options, i, o) {
                const char *opt = plain_string(o, 128);
                if (!opt)
                        goto bad_option;
                if (streq(opt, "bind"))
                        bind = true;
                else if (streq(opt, "rbind"))
                        bind = rbind = true;
        }
        if (!type || !*type || streq(type, "bind") || streq(type, "none")) {
                if (!bind && type && !streq(type, "bind"))
                        return fail(error, "Mounts[%zu]: type %s needs a bind option", index, type);
                out.kind = MOUNT_BIND;
        } else if (streq(type, "tmpfs"))
                out.kind = MOUNT_TMPFS;
        else if (streq(type, "proc"))
                out.kind = MOUNT_PROC;
        else if (streq(type, "sysfs"))
                out.kind = MOUNT_SYSFS;
        else if (streq(type, "devpts"))
                out.kind = MOUNT_DEVPTS;
        else if (streq(type, "mqueue"))
                out.kind = MOUNT_MQUEUE;
        else
                return fail(error, "Mounts[%zu]: unsupported type %s (bind, tmpfs, proc, sysfs, devpts, mqueue)", index,
                            type);
        if (out.kind == MOUNT_BIND && (!source || !spec_path_is_safe(source)))
                return fail(error, "Mounts[%zu].Source must be an absolute guest path without . or ..", index);
        out.recursive = rbind;

        json_array_foreach(options, i, o) {
                const char *opt = json_string_value(o);
                if (streq(opt, "bind") || streq(opt, "rbind"))
                        continue;
                bool known = false;
                for (size_t k = 0; k < ELEMENTSOF(mount_flags); k++)
                        if (streq(opt, mount_flags[k].name)) {
                                out.flags = (out.flags | mount_flags[k].set) & ~mount_flags[k].clear;
                                known = true;
                        }
                if (known)
                        continue;
                /* Filesystem data: only a few keys, only for the filesystems that take them. */
                static const char *const data_keys[] = { "size",      "mode",      "uid",      "gid",
                                                         "nr_inodes", "nr_blocks", "ptmxmode", "max" };
                const char *eq = strchr(opt, '=');
                bool ok = false;
                if (out.kind != MOUNT_BIND && out.kind != MOUNT_PROC && out.kind != MOUNT_SYSFS) {
                        if (streq(opt, "newinstance") && out.kind == MOUNT_DEVPTS)
                                ok = true;
                        else if (eq && option_value_is_valid(eq + 1))
                                for (size_t k = 0; k < ELEMENTSOF(data_keys); k++)
                                        if (strlen(data_keys[k]) == (size_t) (eq - opt) &&
                                            strncmp(opt, data_keys[k], (size_t) (eq - opt)) == 0)
                                                ok = true;
                }
                if (!ok)
                        goto bad_option;
                if (append_data(&out.data, opt) < 0) {
                        free(out.data);
                        return -ENOMEM;
                }
        }
        bool readonly = false;
        if ((r = opt_bool(m, "ReadOnly", &readonly, error)) < 0) {
                free(out.data);
                return r;
        }
        if (readonly)
                out.flags |= MS_RDONLY;
        out.destination = strdup(dest);
        out.source = source ? strdup(source) : NULL;
        if (!out.destination || (source && !out.source)) {
                free(out.destination);
                free(out.source);
                free(out.data);
                return -ENOMEM;
        }
        *ret = out;
        return 0;
bad_option:
        free(out.data);
        return fail(error, "Mounts[%zu].Options[%zu] is not a supported option for this type", index, i);
}

static int parse_device(const json_t *d, size_t index, device_spec_t *ret, char *error) {
        device_spec_t out = { 0 };
        int r;
        if (!json_is_object(d))
                return fail(error, "DeviceInfos[%zu] must be an object", index);
        const char *path = NULL, *type = NULL;
        if ((r = opt_string(d, "ContainerPath", PATH_MAX - 1, &path, error)) < 0 ||
            (r = opt_string(d, "DevType", 4, &type, error)) < 0)
                return r;
        if (!path || !spec_path_is_safe(path) || strncmp(path, "/dev/", 5) != 0)
                return fail(error, "DeviceInfos[%zu].ContainerPath must be a safe absolute path under /dev", index);
        if (!type || streq(type, "c") || streq(type, "u"))
                out.type = S_IFCHR;
        else if (streq(type, "b"))
                out.type = S_IFBLK;
        else if (streq(type, "p"))
                out.type = S_IFIFO;
        else
                return fail(error, "DeviceInfos[%zu].DevType must be c, b, u or p", index);
        int64_t major = 0, minor = 0, mode = 0, uid = 0, gid = 0;
        if ((r = opt_int(d, "Major", 0, 4095, NULL, &major, error)) < 0 ||
            (r = opt_int(d, "Minor", 0, 1048575, NULL, &minor, error)) < 0 ||
            (r = opt_int(d, "FileMode", 0, UINT32_MAX, NULL, &mode, error)) < 0 ||
            (r = opt_int(d, "UID", 0, UINT32_MAX - 1, NULL, &uid, error)) < 0 ||
            (r = opt_int(d, "GID", 0, UINT32_MAX - 1, NULL, &gid, error)) < 0)
                return r;
        out.major = (unsigned) major;
        out.minor = (unsigned) minor;
        /* Go's os.FileMode keeps type bits above the permissions: only the permissions count. */
        out.mode = (mode_t) (mode & 07777) ?: 0666;
        out.uid = (uid_t) uid;
        out.gid = (gid_t) gid;
        out.path = strdup(path);
        if (!out.path)
                return -ENOMEM;
        *ret = out;
        return 0;
}

void container_spec_free(container_spec_t *spec) {
        if (!spec)
                return;
        free(spec->rootfs);
        free(spec->hostname);
        process_spec_done(&spec->process);
        for (size_t i = 0; i < spec->n_mounts; i++) {
                free(spec->mounts[i].source);
                free(spec->mounts[i].destination);
                free(spec->mounts[i].data);
        }
        free(spec->mounts);
        for (size_t i = 0; i < spec->n_devices; i++)
                free(spec->devices[i].path);
        free(spec->devices);
        resources_spec_done(&spec->resources);
        json_decref(spec->config);
        free(spec);
}

int spec_parse_container(const json_t *params, container_spec_t **ret, char *error) {
        int r;
        const char *cid = json_get_string(params, "ContainerID");
        if (!cid || !id_is_valid(cid))
                return fail(error, "ContainerID must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
        const char *sid;
        if ((r = opt_string(params, "SandboxID", ID_MAX, &sid, error)) < 0)
                return r;
        if (sid && *sid && !id_is_valid(sid))
                return fail(error, "SandboxID must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}");
        json_t *config = member(params, "Config");
        if (!json_is_object(config))
                return fail(error, "ContainerID and Config are required");
        const char *rootfs, *hostname;
        if ((r = opt_string(params, "Rootfs", PATH_MAX - 1, &rootfs, error)) < 0 ||
            (r = opt_string(params, "Hostname", HOSTNAME_MAX, &hostname, error)) < 0)
                return r;
        if (!rootfs || !spec_path_is_safe(rootfs) || streq(rootfs, "/"))
                return fail(error, "Rootfs must be an absolute guest path without . or .. components");
        if (hostname && *hostname && !hostname_is_valid(hostname))
                return fail(error, "Hostname is not a valid host name");

        container_spec_t *spec = calloc(1, sizeof *spec);
        if (!spec)
                return -ENOMEM;
        snprintf(spec->id, sizeof spec->id, "%s", cid);
        snprintf(spec->sandbox_id, sizeof spec->sandbox_id, "%s", sid ? sid : "");
        spec->config = json_incref(config);
        spec->rootfs = strdup(rootfs);
        spec->hostname = strdup(hostname && *hostname ? hostname : cid);
        if (!spec->rootfs || !spec->hostname) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = opt_bool(config, "ReadonlyRootfs", &spec->readonly_rootfs, error)) < 0)
                goto fail;
        json_t *cmd = member(config, "Cmd");
        if (!cmd) {
                r = fail(error, "Config.Cmd.Args must not be empty");
                goto fail;
        }
        if ((r = spec_parse_process(cmd, &spec->process, error)) < 0)
                goto fail;

        json_t *mounts = member(config, "Mounts");
        if (mounts) {
                if (!json_is_array(mounts) || json_array_size(mounts) > MOUNTS_MAX) {
                        r = fail(error, "Config.Mounts must be an array of at most %d mounts", MOUNTS_MAX);
                        goto fail;
                }
                spec->mounts = calloc(json_array_size(mounts) + 1, sizeof *spec->mounts);
                if (!spec->mounts) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < json_array_size(mounts); i++) {
                        if ((r = parse_mount(json_array_get(mounts, i), i, &spec->mounts[i], error)) < 0)
                                goto fail;
                        spec->n_mounts++;
                }
        }
        json_t *devices = member(config, "DeviceInfos");
        if (devices) {
                if (!json_is_array(devices) || json_array_size(devices) > DEVICES_MAX) {
                        r = fail(error, "Config.DeviceInfos must be an array of at most %d devices", DEVICES_MAX);
                        goto fail;
                }
                spec->devices = calloc(json_array_size(devices) + 1, sizeof *spec->devices);
                if (!spec->devices) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < json_array_size(devices); i++) {
                        if ((r = parse_device(json_array_get(devices, i), i, &spec->devices[i], error)) < 0)
                                goto fail;
                        spec->n_devices++;
                }
        }
        json_t *resources = member(config, "Resources");
        if (resources && (r = spec_parse_resources(resources, &spec->resources, error)) < 0)
                goto fail;
        *ret = spec;
        return 0;
fail:
        container_spec_free(spec);
        return r;
}

static const struct {
        const char *name;
        ps_field_t field;
} ps_names[] = {
        { "pid", PS_PID },      { "ppid", PS_PPID },        { "user", PS_USER },   { "euser", PS_USER },
        { "uname", PS_USER },   { "uid", PS_UID },          { "euid", PS_UID },    { "gid", PS_GID },
        { "egid", PS_GID },     { "comm", PS_COMM },        { "ucomm", PS_COMM },  { "args", PS_ARGS },
        { "command", PS_ARGS }, { "cmd", PS_CMD },          { "stat", PS_STAT },   { "rss", PS_RSS },
        { "rssize", PS_RSS },   { "rsz", PS_RSS },          { "vsz", PS_VSZ },     { "vsize", PS_VSZ },
        { "time", PS_TIME },    { "cputime", PS_TIME },     { "etime", PS_ETIME }, { "c", PS_C },
        { "stime", PS_STIME },  { "start_time", PS_STIME }, { "tty", PS_TTY },     { "tt", PS_TTY },
        { "tname", PS_TTY },
};

const char *ps_field_title(ps_field_t f) {
        static const char *const titles[_PS_FIELD_MAX] = {
                [PS_PID] = "PID",       [PS_PPID] = "PPID",    [PS_USER] = "USER",    [PS_UID] = "UID",
                [PS_GID] = "GID",       [PS_COMM] = "COMMAND", [PS_ARGS] = "COMMAND", [PS_CMD] = "CMD",
                [PS_STAT] = "STAT",     [PS_RSS] = "RSS",      [PS_VSZ] = "VSZ",      [PS_TIME] = "TIME",
                [PS_ETIME] = "ELAPSED", [PS_C] = "C",          [PS_STIME] = "STIME",  [PS_TTY] = "TTY",
        };
        return f >= 0 && f < _PS_FIELD_MAX ? titles[f] : "?";
}

static int ps_add(ps_spec_t *ps, ps_field_t f, const char *title, size_t title_len, char *error) {
        if (ps->n_columns >= PS_COLUMNS_MAX)
                return fail(error, "too many ps columns (at most %d)", PS_COLUMNS_MAX);
        ps->fields[ps->n_columns] = f;
        if (!title) {
                title = ps_field_title(f);
                title_len = strlen(title);
        }
        if (title_len >= sizeof ps->titles[0])
                title_len = sizeof ps->titles[0] - 1;
        memcpy(ps->titles[ps->n_columns], title, title_len);
        ps->titles[ps->n_columns][title_len] = 0;
        ps->n_columns++;
        return 0;
}

/* Parses a -o list: "pid,comm", "pid comm" or "pid,args=COMMAND LINE" (a title runs to the end). */
static int ps_parse_fields(ps_spec_t *ps, const char *list, char *error) {
        const char *p = list;
        while (*p) {
                while (*p == ',' || *p == ' ')
                        p++;
                if (!*p)
                        break;
                size_t n = strcspn(p, ",= ");
                ps_field_t field = _PS_FIELD_MAX;
                for (size_t k = 0; k < ELEMENTSOF(ps_names); k++)
                        if (strlen(ps_names[k].name) == n && strncmp(p, ps_names[k].name, n) == 0)
                                field = ps_names[k].field;
                if (field == _PS_FIELD_MAX)
                        return fail(error, "unsupported ps field %.*s", (int) (n > 32 ? 32 : n), p);
                p += n;
                int r;
                if (*p == '=') {
                        r = ps_add(ps, field, p + 1, strlen(p + 1), error);
                        return r;
                }
                if ((r = ps_add(ps, field, NULL, 0, error)) < 0)
                        return r;
        }
        return 0;
}

int spec_parse_ps(const json_t *format, const json_t *args, ps_spec_t *ret, char *error) {
        ps_spec_t ps = { 0 };
        if (format && !json_is_null(format)) {
                const char *f = plain_string(format, 16);
                if (!f || (!streq(f, "json") && !streq(f, "table")))
                        return fail(error, "unknown format %s", f ? f : "(not a string)");
                ps.table = streq(f, "table");
        }
        if (args && !json_is_null(args) && (!json_is_array(args) || json_array_size(args) > 64))
                return fail(error, "Args must be an array of strings");
        bool full = false, every = false, columns = false;
        size_t n = json_array_size(args);
        for (size_t i = 0; i < n; i++) {
                const char *a = plain_string(json_array_get(args, i), 1024);
                if (!a || a[0] != '-' || !a[1])
                        return fail(error, "unsupported ps argument %s (supported: -e, -A, -f, -o LIST)",
                                    a ? a : "(not a string)");
                for (const char *c = a + 1; *c; c++) {
                        if (*c == 'e' || *c == 'A')
                                every = true;
                        else if (*c == 'f')
                                full = true;
                        else if (*c == 'o') {
                                const char *list = c[1] == '=' ? c + 2 : c[1] ? c + 1 : NULL;
                                if (!list) {
                                        if (i + 1 >= n)
                                                return fail(error, "ps -o needs a field list");
                                        list = plain_string(json_array_get(args, ++i), 1024);
                                        if (!list)
                                                return fail(error, "ps -o needs a field list");
                                }
                                int r = ps_parse_fields(&ps, list, error);
                                if (r < 0)
                                        return r;
                                columns = true;
                                break;
                        } else
                                return fail(error, "unsupported ps option -%c (supported: -e, -A, -f, -o LIST)", *c);
                }
        }
        (void) every; /* every process of the container is always listed */
        if (!columns) {
                if (full || n == 0) {
                        static const ps_field_t f[] = { PS_USER,  PS_PID, PS_PPID, PS_C,
                                                        PS_STIME, PS_TTY, PS_TIME, PS_CMD };
                        static const char *const t[] = { "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD" };
                        for (size_t k = 0; k < ELEMENTSOF(f); k++)
                                ps_add(&ps, f[k], t[k], strlen(t[k]), error);
                } else {
                        static const ps_field_t f[] = { PS_PID, PS_TTY, PS_TIME, PS_COMM };
                        static const char *const t[] = { "PID", "TTY", "TIME", "CMD" };
                        for (size_t k = 0; k < ELEMENTSOF(f); k++)
                                ps_add(&ps, f[k], t[k], strlen(t[k]), error);
                }
        }
        if (ps.n_columns == 0)
                return fail(error, "ps -o selected no columns");
        *ret = ps;
        return 0;
}
