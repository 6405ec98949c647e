/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the validator's round lockfile content, read by the
 * Updater's "round-lock" gate (shared/round-lock.c). Any bytes give a pid or
 * 0, never a crash; a pid is positive, fits a pid_t, and comes only from a
 * document that names "pid". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/round-lock.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        pid_t pid = round_lock_parse_pid((const char *) data, size);
        if (pid < 0 || pid == INT32_MAX)
                abort();
        if (pid > 0 && !memmem(data, size, "pid", 3))
                abort();
        return 0;
}
