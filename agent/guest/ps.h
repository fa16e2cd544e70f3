/* ListProcesses: ps(1) for one container, read from /proc, with PIDs as the container sees them. */
#pragma once

#include <jansson.h>
#include <sys/types.h>

#include "spec.h"

/* Builds {"Titles":[...],"Processes":[[...],...]} (or {"Output":"..."} for a table) for pids (the
 * agent's view); init_pid's root supplies /etc/passwd for user names. */
int ps_list(const ps_spec_t *ps, const pid_t *pids, size_t n, pid_t init_pid, json_t **ret);
