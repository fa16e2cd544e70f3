/* The guest agent's backend for common/log.h: one "katad-agent: ..." line per message, like the
 * kernel's own lines, on stderr, which is /dev/console when the agent runs as PID 1. It replaces
 * common/log.c in the agent's link. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"

static int max_level = LOG_WARNING;

void log_set_level(int level) {
        max_level = level;
}

int log_get_level(void) {
        return max_level;
}

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit", [LOG_ERR] = "error",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int) i;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == 0)
                return s[0] - '0';
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || (size_t) level >= ELEMENTSOF(level_names))
                return "unknown";
        return level_names[level];
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) {
        int saved = errno;
        error = error < 0 ? -error : error;
        if (level > max_level) {
                errno = saved;
                return -error;
        }
        char msg[1024];
        int n = snprintf(msg, sizeof msg, "katad-agent: ");
        va_list ap;
        va_start(ap, fmt);
        errno = error; /* lets callers use %m for the error they pass */
        vsnprintf(msg + n, sizeof msg - (size_t) n - 1, fmt, ap);
        va_end(ap);
        size_t len = strlen(msg);
        if (max_level >= LOG_DEBUG && len + 64 < sizeof msg)
                len += (size_t) snprintf(msg + len, sizeof msg - len, " (%s:%d)", file, line);
        msg[len++] = '\n';
        /* One write per line, so lines from the agent and the kernel do not interleave mid-line. */
        ssize_t k = write(STDERR_FILENO, msg, len);
        (void) k;
        errno = saved;
        return -error;
}
