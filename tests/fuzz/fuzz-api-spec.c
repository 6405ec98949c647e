/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the Platform API document is the launcher's widest
 * untrusted input. A document that parses must also build a compose; the
 * same bytes are tried as an existing compose_file. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/api-spec.h"
#include "shared/compose.h"
#include "shared/macro.h"
#include "shared/strv.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* A json-glib critical means we called it on a node of the wrong type. */
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

static void check_spec(const PlatformVmSpec *spec) {
        _cleanup_free_ char *out = NULL;
        size_t n;
        char hash[COMPOSE_HASH_HEX_LEN + 1];

        /* Strings were validated as UTF-8, so building cannot fail but for memory. */
        int r = compose_build(spec, &out, &n);
        if (r == -ENOMEM)
                return;
        if (r < 0 || compose_hash(out, n, hash) < 0)
                abort();

        /* What we build, we must read back. */
        _cleanup_strv_free_ char **allowed = NULL, **want = NULL;
        if (compose_parse_allowed_envs(out, n, &allowed, NULL) < 0 || compose_allowed_envs(spec, &want) < 0)
                abort();
        if (strv_length(allowed) != strv_length(want))
                abort();
        for (size_t i = 0; want[i]; i++)
                if (!streq(allowed[i], want[i]))
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL;
        _cleanup_strv_free_ char **allowed = NULL;

        int r = platform_vm_spec_parse((const char *) data, size, &spec, &err);
        if (r == 0)
                check_spec(spec);
        else if (r == -EINVAL && !err)
                abort(); /* every refusal names a field */

        (void) compose_parse_allowed_envs((const char *) data, size, &allowed, &err2);
        return 0;
}
