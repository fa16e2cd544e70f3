/* Who a container process runs as (see identity.h). */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "identity.h"
#include "macro.h"
#include "util.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DB_MAX (4u << 20)
#define GROUPS_MAX 256

_printf_(3, 4) static int fail(char *error, int r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        errno = r < 0 ? -r : r;
        vsnprintf(error, SPEC_ERROR_MAX, fmt, ap);
        va_end(ap);
        return r < 0 ? r : -r;
}

int identity_parse_id(const char *s, unsigned *ret) {
        uint64_t v;
        if (!s || !*s || strspn(s, "0123456789") != strlen(s) || parse_u64(s, &v) < 0 || v >= UINT32_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* Splits a colon-separated line into at most n fields (in place); returns how many. */
static size_t split_fields(char *line, char **fields, size_t n) {
        size_t i = 0;
        while (i < n) {
                fields[i++] = line;
                char *colon = strchr(line, ':');
                if (!colon)
                        break;
                *colon = 0;
                line = colon + 1;
        }
        return i;
}

typedef struct passwd_entry {
        bool found;
        unsigned uid, gid;
        char name[65];
        char home[PATH_MAX];
} passwd_entry_t;

/* Finds a user by name or, with name NULL, by uid. A missing /etc/passwd finds nothing. */
static int passwd_lookup(const char *name, unsigned uid, passwd_entry_t *ret) {
        _cleanup_free_ char *db = NULL;
        *ret = (passwd_entry_t){ 0 };
        int r = read_file("/etc/passwd", DB_MAX, &db, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        char *save = NULL;
        for (char *line = strtok_r(db, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[7];
                unsigned u, g;
                if (split_fields(line, f, 7) < 7 || identity_parse_id(f[2], &u) < 0 || identity_parse_id(f[3], &g) < 0)
                        continue;
                if (name ? !streq(f[0], name) : u != uid)
                        continue;
                ret->found = true;
                ret->uid = u;
                ret->gid = g;
                snprintf(ret->name, sizeof ret->name, "%s", f[0]);
                snprintf(ret->home, sizeof ret->home, "%s", *f[5] ? f[5] : "/");
                return 0;
        }
        return 0;
}

/* Finds a group by name, or (member set) appends every group listing member to groups. */
static int group_lookup(const char *name, unsigned *ret_gid, const char *member, gid_t *groups, size_t *n_groups) {
        _cleanup_free_ char *db = NULL;
        int r = read_file("/etc/group", DB_MAX, &db, NULL);
        if (r == -ENOENT)
                return name ? -ENOENT : 0;
        if (r < 0)
                return r;
        char *save = NULL;
        for (char *line = strtok_r(db, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[4];
                unsigned g;
                if (split_fields(line, f, 4) < 4 || identity_parse_id(f[2], &g) < 0)
                        continue;
                if (name) {
                        if (streq(f[0], name)) {
                                *ret_gid = g;
                                return 0;
                        }
                        continue;
                }
                char *save2 = NULL;
                for (char *m = strtok_r(f[3], ",", &save2); m; m = strtok_r(NULL, ",", &save2))
                        if (streq(m, member) && *n_groups < GROUPS_MAX)
                                groups[(*n_groups)++] = g;
        }
        return name ? -ENOENT : 0;
}

static int resolve_group(const char *s, unsigned *ret, char *error) {
        if (identity_parse_id(s, ret) == 0)
                return 0;
        int r = group_lookup(s, ret, NULL, NULL, NULL);
        if (r < 0)
                return fail(error, r, "unable to find group %s: %s", s,
                            r == -ENOENT ? "no matching entries in group file" : strerror(-r));
        return 0;
}

static void add_group(gid_t *groups, size_t *n, gid_t g) {
        for (size_t i = 0; i < *n; i++)
                if (groups[i] == g)
                        return;
        if (*n < GROUPS_MAX)
                groups[(*n)++] = g;
}

int identity_resolve(const process_spec_t *p, identity_t *ret, char *error) {
        identity_t id = { .uid = 0, .gid = 0 };
        snprintf(id.home, sizeof id.home, "/");
        char user[160] = "", *group = NULL;
        snprintf(user, sizeof user, "%s", p->user ? p->user : "");
        if ((group = strchr(user, ':')))
                *group++ = 0;
        passwd_entry_t pw;
        int r;
        if (!*user || identity_parse_id(user, &id.uid) == 0) {
                r = passwd_lookup(NULL, id.uid, &pw);
        } else {
                r = passwd_lookup(user, 0, &pw);
                if (r >= 0 && !pw.found)
                        return fail(error, -ENOENT, "unable to find user %s: no matching entries in passwd file", user);
        }
        if (r < 0)
                return fail(error, r, "cannot read /etc/passwd: %m");
        if (pw.found) {
                id.uid = pw.uid;
                id.gid = pw.gid;
                snprintf(id.home, sizeof id.home, "%s", pw.home);
        }
        unsigned g;
        if (group && *group) {
                if ((r = resolve_group(group, &g, error)) < 0)
                        return r;
                id.gid = g;
        }
        if (p->primary_group) {
                if ((r = resolve_group(p->primary_group, &g, error)) < 0)
                        return r;
                id.gid = g;
        }
        id.groups = calloc(GROUPS_MAX, sizeof *id.groups);
        if (!id.groups)
                return fail(error, -ENOMEM, "out of memory");
        if (pw.found && (r = group_lookup(NULL, NULL, pw.name, id.groups, &id.n_groups)) < 0) {
                free(id.groups);
                return fail(error, r, "cannot read /etc/group: %m");
        }
        for (char **s = p->groups; s && *s; s++) {
                if ((r = resolve_group(*s, &g, error)) < 0) {
                        free(id.groups);
                        return r;
                }
                add_group(id.groups, &id.n_groups, g);
        }
        *ret = id;
        return 0;
}

static bool env_has(char **env, const char *name) {
        size_t n = strlen(name);
        for (char **e = env; e && *e; e++)
                if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
                        return true;
        return false;
}

static const char *env_get(char **env, const char *name) {
        size_t n = strlen(name);
        for (char **e = env; e && *e; e++)
                if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
                        return *e + n + 1;
        return NULL;
}

char **identity_environment(const process_spec_t *p, const identity_t *id) {
        size_t n = 0;
        while (p->env && p->env[n])
                n++;
        char **env = calloc(n + 5, sizeof *env);
        if (!env)
                return NULL;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                env[k++] = p->env[i];
        char hostname[128] = "";
        gethostname(hostname, sizeof hostname - 1);
        if (!env_has(env, "PATH"))
                env[k++] = (char *) "PATH=" DEFAULT_PATH;
        if (!env_has(env, "HOSTNAME") && *hostname && asprintf(&env[k], "HOSTNAME=%s", hostname) >= 0)
                k++;
        if (!env_has(env, "HOME") && asprintf(&env[k], "HOME=%s", id->home) >= 0)
                k++;
        if (p->terminal && !env_has(env, "TERM"))
                env[k++] = (char *) "TERM=xterm";
        env[k] = NULL;
        return env; /* lives until execve: nothing here is freed */
}

int identity_find_executable(const char *name, char **env, char **ret) {
        if (strchr(name, '/')) {
                *ret = strdup(name);
                return *ret ? 0 : -ENOMEM;
        }
        const char *path = env_get(env, "PATH");
        if (!path)
                path = DEFAULT_PATH;
        int r = -ENOENT;
        for (const char *p = path;; p++) {
                const char *end = strchrnul(p, ':');
                char candidate[PATH_MAX];
                int len = snprintf(candidate, sizeof candidate, "%.*s%s%s", (int) (end - p), p, end == p ? "" : "/",
                                   name);
                if (len > 0 && (size_t) len < sizeof candidate) {
                        struct stat st;
                        if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
                                if (access(candidate, X_OK) == 0) {
                                        *ret = strdup(candidate);
                                        return *ret ? 0 : -ENOMEM;
                                }
                                r = -EACCES;
                        }
                }
                if (!*end)
                        break;
                p = end;
        }
        return r;
}

static int last_cap(void) {
        _cleanup_free_ char *text = NULL;
        uint64_t v;
        if (read_file("/proc/sys/kernel/cap_last_cap", 64, &text, NULL) < 0)
                return CAPABILITY_LAST;
        text[strcspn(text, "\n")] = 0;
        return parse_u64(text, &v) < 0 || v > 63 ? CAPABILITY_LAST : (int) v;
}

int identity_apply(const process_spec_t *p, const identity_t *id, char *error) {
        uint64_t caps[_CAP_SET_MAX];
        if (p->has_capabilities)
                memcpy(caps, p->capabilities, sizeof caps);
        else {
                uint64_t def = capability_default_set();
                caps[CAP_SET_BOUNDING] = caps[CAP_SET_EFFECTIVE] = caps[CAP_SET_PERMITTED] = def;
                caps[CAP_SET_INHERITABLE] = caps[CAP_SET_AMBIENT] = 0;
        }
        int last = last_cap();
        for (int cap = 0; cap <= last; cap++)
                if (!(caps[CAP_SET_BOUNDING] & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 &&
                    errno != EINVAL)
                        return fail(error, -errno, "cannot drop capability %d from the bounding set: %m", cap);
        if (setgroups(id->n_groups, id->groups) < 0)
                return fail(error, -errno, "setgroups failed: %m");
        if (setresgid(id->gid, id->gid, id->gid) < 0)
                return fail(error, -errno, "setresgid(%u) failed: %m", (unsigned) id->gid);
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
                return fail(error, -errno, "PR_SET_KEEPCAPS failed: %m");
        if (setresuid(id->uid, id->uid, id->uid) < 0)
                return fail(error, -errno, "setresuid(%u) failed: %m", (unsigned) id->uid);
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);

        uint64_t mask = last >= 63 ? UINT64_MAX : (UINT64_C(1) << (last + 1)) - 1;
        uint64_t eff = caps[CAP_SET_EFFECTIVE] & mask, prm = caps[CAP_SET_PERMITTED] & mask,
                 inh = caps[CAP_SET_INHERITABLE] & mask;
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct data[2] = {
                { .effective = (uint32_t) eff, .permitted = (uint32_t) prm, .inheritable = (uint32_t) inh },
                { .effective = (uint32_t) (eff >> 32),
                  .permitted = (uint32_t) (prm >> 32),
                  .inheritable = (uint32_t) (inh >> 32) },
        };
        if (syscall(SYS_capset, &hdr, data) < 0)
                return fail(error, -errno, "capset failed: %m");
        for (int cap = 0; cap <= last; cap++)
                if ((caps[CAP_SET_AMBIENT] & (UINT64_C(1) << cap)) &&
                    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                        return fail(error, -errno, "cannot raise the ambient capability %s: %m",
                                    capability_to_name(cap));
        if (p->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return fail(error, -errno, "PR_SET_NO_NEW_PRIVS failed: %m");
        return 0;
}
