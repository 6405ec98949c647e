/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the Validation API's /validate/active reply (dstack.md
 * §5b), the Updater's busy gate. A reply may be refused (with the field
 * named), never crash; what is kept for a reason text is bounded and
 * printable, and the reason text fits any buffer. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "clients/platform-api.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

static void check_text(const char *t) {
        size_t n = strnlen(t, PLATFORM_ACTIVE_TEXT_MAX + 1);
        if (n > PLATFORM_ACTIVE_TEXT_MAX)
                abort();
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) t[i] < 0x20 || (unsigned char) t[i] > 0x7e)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *err = NULL;
        PlatformActive a;
        char buf[PLATFORM_ACTIVE_DETAIL_MAX];

        int r = platform_parse_active_reply((const char *) data, size, &a, &err);
        if (r < 0) {
                if (r != -ENOMEM && (r != -EBADMSG || !err || strncmp(err, "validate/active", 15) != 0))
                        abort();
                return 0;
        }
        if (err)
                abort();
        if (a.n_jobs != MIN((size_t) a.n_active, (size_t) PLATFORM_ACTIVE_JOBS_KEPT))
                abort();
        for (size_t i = 0; i < a.n_jobs; i++) {
                check_text(a.jobs[i].job_id);
                check_text(a.jobs[i].status);
        }
        platform_active_format(&a, buf, sizeof buf);
        if (strlen(buf) >= sizeof buf || (a.n_active == 0) != streq(buf, "no active jobs"))
                abort();
        /* Every buffer size, the cut included, stays inside its buffer. */
        for (size_t n = 1; n <= 64; n *= 2) {
                char *small = malloc(n);
                if (!small)
                        return 0;
                platform_active_format(&a, small, n);
                if (strlen(small) >= n || strncmp(small, buf, strlen(small)) != 0)
                        abort();
                free(small);
        }
        return 0;
}
