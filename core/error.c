/* Errors as they cross from core to the API edge. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int kd_status_from_errno(int r) {
        switch (-r) {
        case EINVAL:
        case ERANGE:
        case ENAMETOOLONG:
                return 400;
        case ENOENT:
        case ESRCH:
                return 404;
        case EEXIST:
        case EBUSY:
        case EALREADY:
        case ENOTTY:
                return 409;
        case EMSGSIZE:
        case E2BIG:
                return 413;
        case EOPNOTSUPP:
                return 501;
        case ESHUTDOWN:
        case EAGAIN:
        case ENOTCONN:
        case ECONNRESET:
        case EPIPE:
                return 503;
        default:
                return 500;
        }
}

int kd_error_set(kd_error_t *e, int r, const char *code, const char *fmt, ...) {
        if (!e)
                return r;
        e->status = kd_status_from_errno(r);
        snprintf(e->code, sizeof e->code, "%s", code);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
        return r;
}
