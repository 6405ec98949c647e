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

/* A name may be shown (env key names are public: EnvKeys), a value never.
 * Every marker in the message must sit in an identifier that the data uses
 * as a member name: "NAME" followed by ':'. */
static bool is_ident(char c) {
        return g_ascii_isalnum(c) || c == '_';
}

static bool used_as_key(const uint8_t *data, size_t size, const char *name, size_t n) {
        for (const uint8_t *p = data, *end = data + size; (p = memmem(p, (size_t) (end - p), name, n)); p++) {
                const uint8_t *q = p + n;
                if (p == data || p[-1] != '"' || q >= end || *q != '"')
                        continue;
                for (q++; q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'); q++)
                        ;
                if (q < end && *q == ':')
                        return true;
        }
        return false;
}

static bool markers_only_in_names(const uint8_t *data, size_t size, const char *err) {
        for (const char *m = err; (m = strstr(m, MARKER)); m += strlen(MARKER)) {
                const char *a = m, *b = m + strlen(MARKER);
                while (a > err && is_ident(a[-1]))
                        a--;
                while (is_ident(*b))
                        b++;
                if (!used_as_key(data, size, a, (size_t) (b - a)))
                        return false;
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

/* The misspelled-key report goes to the bus and the journal: printable ASCII
 * (a key's other bytes escaped), bounded, and each key it names is in the file. */
static void check_misspelled(const LauncherConfig *c) {
        _cleanup_free_ char *report = launcher_config_misspelled_keys(c);
        if (!report)
                return;
        size_t n = strlen(report);
        if (n > 4096)
                abort();
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) report[i] < 0x20 || (unsigned char) report[i] >= 0x7f)
                        abort();
        if (!g_str_has_prefix(report, "unknown key '"))
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
                    !markers_only_in_names(data, size, err))
                        abort();
                return 0;
        }
        if (!c || err)
                abort();
        check_roundtrip(c);
        check_misspelled(c);
        return 0;
}
