/* Who a container process runs as, and the switch to it just before execve: user and groups
 * looked up in the container's own /etc/passwd and /etc/group (never through NSS: the agent is
 * static), environment defaults, working directory, capabilities, no_new_privs and the PATH
 * lookup. Runs only in the forked child, inside the container's root. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "spec.h"

typedef struct identity {
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
        char home[PATH_MAX];
} identity_t;

/* Resolves p's User, PrimaryGroup and SupplementaryGroups against /etc/passwd and /etc/group. */
int identity_resolve(const process_spec_t *p, identity_t *ret, char *error);
/* The environment for execve: p's, plus PATH, HOME, HOSTNAME and (with a terminal) TERM when absent. */
char **identity_environment(const process_spec_t *p, const identity_t *id);
/* Finds argv[0] through PATH from env, as execvp would; *ret is malloc'ed. */
int identity_find_executable(const char *name, char **env, char **ret);
/* Drops to the identity: bounding set, groups, gid, uid, capabilities, ambient set, no_new_privs. */
int identity_apply(const process_spec_t *p, const identity_t *id, char *error);
/* Parses a decimal id (uid or gid); -EINVAL unless all digits and in range. */
int identity_parse_id(const char *s, unsigned *ret);
