/* Utilities shared by katad, katactl and the guest agent: ids, files, time, signals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ID_MAX 64

/* True when s matches [A-Za-z0-9][A-Za-z0-9_.-]{0,63}; such an id is safe as one path component. */
bool id_is_valid(const char *s);
/* Writes a new random 32-hex-digit id into ret (at least 33 bytes); negative errno on failure. */
int id_generate(char *ret, size_t size);

/* Creates a directory and its parents with the given mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);
/* Writes data to path through a temporary file, fsync and rename, so readers see old or new. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file (at most max bytes, else -EFBIG) into a NUL-terminated buffer. */
int read_file(const char *path, size_t max, char **ret_data, size_t *ret_len);
/* Removes a directory tree without following symlinks and without entering other mounts (-EBUSY
 * when one is in the way, after removing what it could); a missing path is fine. */
int rm_rf(const char *path);

/* Wall clock in nanoseconds, and monotonic clock in nanoseconds. */
int64_t now_realtime_ns(void);
int64_t now_monotonic_ns(void);
/* Formats a wall-clock time as RFC 3339 with nanoseconds in UTC, as Go's time.Time marshals it. */
void format_rfc3339(int64_t realtime_ns, char *buf, size_t size);
/* Parses an RFC 3339 time: YYYY-MM-DDTHH:MM:SS[.frac] then Z or ±HH:MM; -EINVAL on bad input,
 * -ERANGE outside what int64 nanoseconds hold (years 1678-2262). */
int parse_rfc3339(const char *s, int64_t *ret_ns);

/* Signal names: "SIGTERM", "TERM", "term" or "15" → 15; negative errno for anything else. */
int signal_from_string(const char *s);
/* "SIGTERM" for 15; NULL for an unknown number. */
const char *signal_to_string(int sig);

/* Parses a non-negative decimal integer that fits in uint64; negative errno otherwise. */
int parse_u64(const char *s, uint64_t *ret);
/* Parses "true"/"false"/"1"/"0"/"yes"/"no"; negative errno otherwise. */
int parse_bool(const char *s, bool *ret);
