/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the guest agent's SysInfo as the VMM forwards it
 * (src/clients/guest-json.c). Untrusted: the parser may refuse, never crash,
 * leak, return an unnamed error or a figure that does not add up. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <glib.h>

#include "clients/guest-json.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VmmGuestSysInfo s;
        char *err = NULL;
        int r = vmm_parse_sysinfo_reply((const char *) data, size, &s, &err);
        if (r < 0 && r != -ENOMEM && (r != -EBADMSG || !err))
                abort();
        if (r == 0 && (err || s.available_memory > s.total_memory || s.disk_free > s.disk_total ||
                       s.n_disks > GUEST_DISKS_MAX))
                abort();
        free(err);
        return 0;
}
