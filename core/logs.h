/* Container logs: what a container's own process writes to stdout and stderr, captured by katad
 * from the agent's stdio streams into RUN_DIR/sandboxes/SID/logs/CID.log (bounded). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "agent/agent.h"

#define LOGS_MAX_BYTES (8u * 1024 * 1024)

typedef struct log_sink log_sink_t;

/* Opens (appending) the log file at path and starts consuming the given streams (0: none) on
 * agent. Returns -EOPNOTSUPP when the agent's transport has no streams. */
int log_sink_attach(agent_t *agent, const char *path, uint32_t stdout_stream, uint32_t stderr_stream,
                    log_sink_t **ret);
/* Stops consuming (no callback runs after this) and frees. Accepts NULL. */
void log_sink_detach(log_sink_t *sink);
/* The path of the log of container cid of sandbox sid under run_dir into buf. */
void logs_path(const char *run_dir, const char *sid, const char *cid, char *buf, size_t size);
