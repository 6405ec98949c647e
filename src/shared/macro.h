/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define streq(a, b) (strcmp((a), (b)) == 0)
#define streq_ptr(a, b) ((a) && (b) ? streq(a, b) : (a) == (b))
#define isempty(s) (!(s) || (s)[0] == '\0')
#define strempty(s) ((s) ? (s) : "")

#define USEC_PER_SEC 1000000ULL
#define USEC_PER_MSEC 1000ULL

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

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Frees a string that held a secret after wiping it. */
static inline void *erase_and_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}
static inline void erase_and_freep(char **p) {
        erase_and_free(*p);
}
#define _cleanup_erase_free_ _cleanup_(erase_and_freep)

/* Steals a pointer out of a cleanup variable. */
#define TAKE_PTR(p)                        \
        ({                                 \
                __typeof__(p) _p_ = (p);   \
                (p) = NULL;                \
                _p_;                       \
        })
