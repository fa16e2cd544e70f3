/* Errors as they cross from core to the API edge: negative errno plus a machine code and message. */
#pragma once

#include "macro.h"

typedef struct kd_error {
        int status;        /* HTTP status derived from the errno, or set explicitly */
        char code[48];     /* stable machine code, e.g. "sandbox_not_found" */
        char message[512]; /* one human sentence, no trailing period */
} kd_error_t;

/* Fills e (if not NULL) and returns r, a negative errno, so callers can `return kd_error_set(...)`.
 * The status follows kd_status_from_errno(r). */
int kd_error_set(kd_error_t *e, int r, const char *code, const char *fmt, ...) _printf_(4, 5);
/* -EINVAL 400, -ENOENT/-ESRCH 404, -EEXIST/-EBUSY/-EALREADY/-ENOTTY 409, -EMSGSIZE 413, -EOPNOTSUPP
 * 501, -ESHUTDOWN/-EAGAIN/-ENOTCONN 503, anything else 500. */
int kd_status_from_errno(int r);
