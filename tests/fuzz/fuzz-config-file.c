/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: /etc/platform-launcher/config.json, hand-edited and read
 * by a root daemon on SIGHUP/Reload. A file may be refused, never crash the
 * daemon; a refusal names a position or field but never quotes a value
 * (issue 9 defect 2: a secret next to a syntax error leaked into
 * ConfigError); what parses, serialises to a file that parses to the same
 * settings and env (defect 3: what the daemon writes, it must read).
 * FUZZ_SKIP_SECRET_CHECK=1 in the environment skips the secret check, to fuzz
 * the rest while defect 2 is open. A marker may show only where it is part
 * of a member name (a string followed by ':'), as env key names are public. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/config-file.h"
#include "shared/macro.h"

#define MARKER "S3CR3T"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool skip_secret_check;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        skip_secret_check = getenv("FUZZ_SKIP_SECRET_CHECK") != NULL;
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

/* Is every marker in the data inside a string that a ':' follows, i.e. a
 * member name? A name may be shown (env key names are public); anything
 * else may be a value and must not. */
static bool marker_only_in_keys(const uint8_t *data, size_t size) {
        const uint8_t *p = data, *end = data + size;
        while ((p = memmem(p, (size_t) (end - p), MARKER, strlen(MARKER)))) {
                const uint8_t *q = p + strlen(MARKER);
                while (q < end && *q != '"')
                        q++;
                if (q < end)
                        q++;
                while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
                        q++;
                if (q >= end || *q != ':')
                        return false;
                p += strlen(MARKER);
        }
        return true;
}

static void check_roundtrip(const LauncherConfig *c) {
        _cleanup_free_ char *out = launcher_config_serialize(c), *err = NULL;
        g_autoptr(LauncherConfig) back = NULL;

        if (!out)
                return; /* -ENOMEM */
        if (launcher_config_parse(out, strlen(out), &back, &err) < 0)
                abort();
        if (!launcher_config_equal_settings(c, back) || launcher_config_env_count(c) != launcher_config_env_count(back))
                abort();
        g_autofree const char **keys = launcher_config_env_keys(c); /* the array is ours */
        for (size_t i = 0; keys && keys[i]; i++)
                if (!streq_ptr(launcher_config_env_get(c, keys[i]), launcher_config_env_get(back, keys[i])))
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(LauncherConfig) c = NULL;
        _cleanup_free_ char *err = NULL;

        int r = launcher_config_parse((const char *) data, size, &c, &err);
        if (r < 0) {
                if (r != -ENOMEM && (r != -EINVAL || !err))
                        abort();
                /* The marker stands for a secret: never in the message. */
                if (err && !skip_secret_check && memmem(data, size, MARKER, strlen(MARKER)) && strstr(err, MARKER) &&
                    !marker_only_in_keys(data, size))
                        abort();
                return 0;
        }
        if (!c || err)
                abort();
        check_roundtrip(c);
        return 0;
}
