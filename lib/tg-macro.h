/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Small language helpers shared by every Tollgate component: cleanup
 * attributes for owned resources, ownership hand-off, array sizes.
 * Destructors used with _cleanup_ accept NULL.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _pure_ __attribute__((pure))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
/* wolfSSL's headers define these too; ours win whatever the include order. */
#undef MIN
#undef MAX
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Take ownership out of a _cleanup_ variable: returns the value, leaves NULL. */
#define TAKE_PTR(p)                                 \
        ({                                          \
                __typeof__(p) _tg_p_ = (p);         \
                (p) = NULL;                         \
                _tg_p_;                             \
        })

#define TAKE_FD(fd)                                 \
        ({                                          \
                int _tg_fd_ = (fd);                 \
                (fd) = -EBADF;                      \
                _tg_fd_;                            \
        })

/* Define a cleanup wrapper "name(type **p)" that calls func(*p) when non-NULL. */
#define TG_DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)   \
        static inline void func##p(type *p) {        \
                if (*p)                              \
                        func(*p);                    \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline int negative_errno(void) {
        /* errno is positive in every libc path we call; never return 0 for a failure. */
        return errno > 0 ? -errno : -EIO;
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)

/* For messages: a string that may be NULL. */
static inline const char *strna(const char *s) {
        return s ? s : "n/a";
}

static inline bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Unaligned big-endian accessors for wire formats. */
static inline void tg_put_be16(uint8_t *p, uint16_t v) {
        p[0] = v >> 8;
        p[1] = v;
}
static inline void tg_put_be32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}
static inline void tg_put_be64(uint8_t *p, uint64_t v) {
        tg_put_be32(p, v >> 32);
        tg_put_be32(p + 4, (uint32_t) v);
}
static inline uint16_t tg_get_be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}
static inline uint32_t tg_get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
static inline uint64_t tg_get_be64(const uint8_t *p) {
        return (uint64_t) tg_get_be32(p) << 32 | tg_get_be32(p + 4);
}

#define USEC_PER_SEC ((uint64_t) 1000000)
#define USEC_PER_MSEC ((uint64_t) 1000)
#define NSEC_PER_USEC ((uint64_t) 1000)
#define USEC_INFINITY UINT64_MAX
