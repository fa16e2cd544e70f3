/* Logging: one line per message on stderr; journald-aware priority prefixes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

static int max_level = LOG_INFO;

void log_set_level(int level) {
        max_level = level;
}

int log_get_level(void) {
        return max_level;
}

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",       [LOG_ERR] = "error",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcasecmp(s, level_names[i]) == 0)
                        return (int) i;
        if (strcasecmp(s, "err") == 0)
                return LOG_ERR;
        if (strcasecmp(s, "warn") == 0)
                return LOG_WARNING;
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
        static int journal = -1; /* racing threads compute the same value */
        int j = __atomic_load_n(&journal, __ATOMIC_RELAXED);
        if (j < 0) {
                j = getenv("JOURNAL_STREAM") != NULL;
                __atomic_store_n(&journal, j, __ATOMIC_RELAXED);
        }

        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        errno = error; /* lets callers use %m for the error they pass */
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);

        if (j)
                fprintf(stderr, "<%d>%s\n", level, msg);
        else {
                struct timespec ts;
                struct tm tm;
                char when[32];
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof when, "%H:%M:%S", &tm);
                if (max_level >= LOG_DEBUG)
                        fprintf(stderr, "%s.%03ld %-7s %s (%s:%d)\n", when, ts.tv_nsec / 1000000,
                                level_names[level], msg, file, line);
                else
                        fprintf(stderr, "%s.%03ld %-7s %s\n", when, ts.tv_nsec / 1000000, level_names[level], msg);
        }
        errno = saved;
        return -error;
}
