/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/macro.h"
#include "shared/strv.h"

char **strv_free(char **l) {
        if (l)
                for (char **p = l; *p; p++)
                        free(*p);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        if (l)
                while (l[n])
                        n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        if (l)
                for (char *const *p = l; *p; p++)
                        if (streq(*p, s))
                                return true;
        return false;
}

void strv_drop(char **l, size_t i) {
        size_t n = strv_length(l);
        free(l[i]);
        memmove(&l[i], &l[i + 1], (n - i) * sizeof(char *));
}

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        char **m = realloc(*l, sizeof(char *) * (n + 2));
        if (!m)
                return -ENOMEM;
        m[n] = TAKE_PTR(copy);
        m[n + 1] = NULL;
        *l = m;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        /* strcmp() compares as unsigned char: byte-wise order, as serde's BTreeSet. */
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void strv_sort_uniq(char **l) {
        size_t n = strv_length(l);
        if (n < 2)
                return;
        qsort(l, n, sizeof(char *), cmp_str);
        size_t w = 1;
        for (size_t r = 1; r < n; r++) {
                if (streq(l[r], l[w - 1]))
                        free(l[r]);
                else
                        l[w++] = l[r];
        }
        l[w] = NULL;
}
