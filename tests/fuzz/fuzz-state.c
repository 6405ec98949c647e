/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the state store's vm.json as vm_deploy_state_load()
 * reads it at start-up (src/core/state.c, used read-only). A disk fault or
 * a hand edit may leave any bytes there: the file may be set aside as
 * corrupt, never crash the daemon; a corrupt file is always reported and a
 * usable fresh state returned. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "core/state.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/fuzz-state-XXXXXX";
static char path[sizeof dir + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof path, "%s/vm.json", dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VmDeployState *s = NULL;
        _cleanup_free_ char *err = NULL;

        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                abort();
        for (size_t off = 0; off < size;) {
                ssize_t k = write(fd, data + off, size - off);
                if (k <= 0)
                        abort();
                off += (size_t) k;
        }
        close(fd);

        int r = vm_deploy_state_load(dir, "validator_vm", &s, &err);
        if (!s || !s->name || !s->name[0])
                abort();
        if (r < 0 && (r != -EINVAL || !err))
                abort();
        if (r == 0 && (err || !s->vm_id || !s->compose_hash || !s->app_id || !s->env_fingerprint || !s->resources))
                abort();
        if (s->intent && (!s->intent->op || !s->intent->op[0]))
                abort();
        vm_deploy_state_free(s);
        return 0;
}
