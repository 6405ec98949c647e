/* SPDX-License-Identifier: Apache-2.0 */
/* The capacity arithmetic, case by case. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "shared/capacity.h"
#include "shared/macro.h"
#include "tests.h"

#define GIB 1024

static const struct {
        const char *name;
        CapacityQuestion q;
        const char *reason;     /* NULL: fits */
} cases[] = {
        { "empty host", { .capacity = { 32, 64 * GIB, 0 }, .wanted = { 16, 16 * GIB, 200 } }, NULL },
        { "exactly full", { .capacity = { 32, 64 * GIB, 0 }, .used = { 16, 48 * GIB, 0 }, .n_started = 3,
                            .wanted = { 16, 16 * GIB, 200 } }, NULL },
        { "one vCPU short",
          { .capacity = { 32, 64 * GIB, 0 }, .used = { 26, 16 * GIB, 0 }, .n_started = 4, .wanted = { 8, 1, 1 } },
          "capacity: needs 8 vCPU, 6 of 32 free (4 VMs started)" },
        { "memory short",
          { .capacity = { 64, 30720, 0 }, .used = { 8, 22528, 0 }, .n_started = 1, .wanted = { 4, 16384, 1 } },
          "capacity: needs 16384 MiB memory, 8192 of 30720 free (1 VM started)" },
        { "disk checked when set",
          { .capacity = { 64, 1 << 20, 1000 }, .used = { 0, 0, 900 }, .n_started = 2, .wanted = { 1, 1, 200 } },
          "capacity: needs 200 GiB disk, 100 of 1000 free (2 VMs started)" },
        { "disk 0 = not checked", { .capacity = { 64, 1 << 20, 0 }, .used = { 0, 0, 900 }, .wanted = { 1, 1, 200 } },
          NULL },
        { "a recreate frees the old VM first",
          { .capacity = { 32, 64 * GIB, 0 }, .used = { 32, 64 * GIB, 0 }, .n_started = 2,
            .freed = { 16, 32 * GIB, 0 }, .wanted = { 16, 32 * GIB, 0 } }, NULL },
        { "a bigger recreate does not fit",
          { .capacity = { 32, 64 * GIB, 0 }, .used = { 32, 64 * GIB, 0 }, .n_started = 2,
            .freed = { 16, 32 * GIB, 0 }, .wanted = { 24, 32 * GIB, 0 } },
          "capacity: needs 24 vCPU, 16 of 32 free (2 VMs started)" },
        { "already over: free is 0",
          { .capacity = { 8, 64 * GIB, 0 }, .used = { 40, 0, 0 }, .n_started = 3, .wanted = { 1, 1, 1 } },
          "capacity: needs 1 vCPU, 0 of 8 free (3 VMs started)" },
        { "freed more than used (a stale view) never wraps",
          { .capacity = { 8, 1024, 0 }, .used = { 2, 0, 0 }, .freed = { 10, 100, 0 }, .wanted = { 8, 1024, 0 } },
          NULL },
        { "huge figures saturate",
          { .capacity = { UINT64_MAX, UINT64_MAX, 0 }, .used = { UINT64_MAX, UINT64_MAX, 0 },
            .wanted = { 1, 1, 0 } },
          "capacity: needs 1 vCPU, 0 of 18446744073709551615 free (0 VMs started)" },
        { "CID pool full for a create",
          { .capacity = { 64, 1 << 20, 0 }, .max_vms = 4, .n_vms = 4, .n_vms_new = 1, .wanted = { 1, 1, 0 } },
          "capacity: the VMM lists 4 VMs and its CID pool holds 4 (max_cvm_number): no CID for another" },
        { "CID pool: a recreate removes the old VM first",
          { .capacity = { 64, 1 << 20, 0 }, .max_vms = 4, .n_vms = 4, .n_vms_freed = 1, .n_vms_new = 1,
            .wanted = { 1, 1, 0 } }, NULL },
        { "CID pool: a start needs none",
          { .capacity = { 64, 1 << 20, 0 }, .max_vms = 4, .n_vms = 4, .wanted = { 1, 1, 0 } }, NULL },
        { "CID pool unknown", { .capacity = { 64, 1 << 20, 0 }, .n_vms = 4000, .n_vms_new = 1, .wanted = { 1, 1, 0 } },
          NULL },
};

int main(void) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                g_autofree char *why = NULL;
                int r = capacity_check(&cases[i].q, &why);
                if (!cases[i].reason) {
                        if (r != 0)
                                fprintf(stderr, "%s: %s\n", cases[i].name, why);
                        assert_se(r == 0 && !why);
                } else {
                        if (r != -ENOSPC || !streq_ptr(why, cases[i].reason))
                                fprintf(stderr, "%s: got %s\n", cases[i].name, strempty(why));
                        assert_se(r == -ENOSPC && streq(why, cases[i].reason));
                }
        }
        assert_se(capacity_sub(1, 2) == 0 && capacity_add(UINT64_MAX, 1) == UINT64_MAX);
        printf("test-capacity: %zu cases passed\n", ELEMENTSOF(cases));
        return 0;
}
