/* Small macros shared by every component: cleanup attributes and ownership moves. */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Moves ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p)                  \
        ({                           \
                __typeof__(p) _p_ = (p); \
                (p) = NULL;          \
                _p_;                 \
        })
#define TAKE_FD(fd)             \
        ({                      \
                int _fd_ = (fd); \
                (fd) = -1;      \
                _fd_;           \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_close_ _cleanup_(closep)

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)    \
        static inline void func##p(type *p) {      \
                if (*p)                            \
                        func(*p);                  \
        }

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strempty(s) (!(s) || !*(s))
