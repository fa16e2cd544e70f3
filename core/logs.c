/* Container logs: a consumer of the agent's stdio streams that appends to a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client.h"
#include "log.h"
#include "logs.h"
#include "util.h"

/* Credit granted up front per stream; the rest follows as bytes are written. */
#define INITIAL_CREDIT (256u * 1024)

struct log_sink {
        agent_t *agent;
        int fd;
        uint32_t streams[2];
        size_t written; /* guarded by the transport: callbacks of one handle do not overlap */
};

void logs_path(const char *run_dir, const char *sid, const char *cid, char *buf, size_t size) {
        snprintf(buf, size, "%s/sandboxes/%s/logs/%s.log", run_dir, sid, cid);
}

static void on_data(agent_t *agent, uint32_t stream_id, const void *data, size_t len, int error, void *userdata) {
        log_sink_t *sink = userdata;
        if (!data)
                return; /* the stream ended; the file stays */
        if (sink->written < LOGS_MAX_BYTES) {
                size_t n = len < LOGS_MAX_BYTES - sink->written ? len : LOGS_MAX_BYTES - sink->written;
                for (const char *p = data; n > 0;) {
                        ssize_t w = write(sink->fd, p, n);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                break;
                        p += w;
                        n -= (size_t) w;
                        sink->written += (size_t) w;
                }
        }
        /* Past the limit the output is dropped, but consumed: a chatty container must not block. */
        agent_stream_credit(agent, stream_id, (uint32_t) len);
}

int log_sink_attach(agent_t *agent, const char *path, uint32_t stdout_stream, uint32_t stderr_stream,
                    log_sink_t **ret) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        *strrchr(dir, '/') = 0;
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        log_sink_t *sink = calloc(1, sizeof *sink);
        if (!sink)
                return -ENOMEM;
        sink->agent = agent;
        sink->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (sink->fd < 0) {
                r = -errno;
                free(sink);
                return r;
        }
        off_t size = lseek(sink->fd, 0, SEEK_END);
        sink->written = size > 0 ? (size_t) size : 0;
        uint32_t ids[2] = { stdout_stream, stderr_stream };
        for (int i = 0; i < 2; i++) {
                if (!ids[i])
                        continue;
                r = agent_stream_open(agent, ids[i], on_data, sink);
                if (r >= 0)
                        r = agent_stream_credit(agent, ids[i], INITIAL_CREDIT);
                if (r < 0) {
                        log_sink_detach(sink);
                        return r;
                }
                sink->streams[i] = ids[i];
        }
        *ret = sink;
        return 0;
}

void log_sink_detach(log_sink_t *sink) {
        if (!sink)
                return;
        for (int i = 0; i < 2; i++)
                if (sink->streams[i])
                        agent_stream_close(sink->agent, sink->streams[i]);
        close(sink->fd);
        free(sink);
}
