/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <string.h>

#include <glib.h>

#include "core/port-conflict.h"
#include "shared/macro.h"

/* The address as 16 bytes (IPv4 as ::ffff:a.b.c.d); false if it is no IP address. */
static bool parse_address(const char *s, unsigned char out[16], bool *ret_unspecified) {
        struct in_addr v4;
        struct in6_addr v6;
        if (inet_pton(AF_INET, s, &v4) == 1) {
                memset(out, 0, 10);
                out[10] = out[11] = 0xff;
                memcpy(out + 12, &v4, 4);
                *ret_unspecified = v4.s_addr == INADDR_ANY;
                return true;
        }
        if (inet_pton(AF_INET6, s, &v6) == 1) {
                memcpy(out, &v6, 16);
                *ret_unspecified = IN6_IS_ADDR_UNSPECIFIED(&v6);
                return true;
        }
        return false;
}

static bool address_conflict(const char *want, const char *have) {
        unsigned char a[16], b[16];
        bool ua = false, ub = false;
        if (isempty(want) || isempty(have))
                return true; /* the VMM's default address: unknown here */
        if (!parse_address(want, a, &ua) || !parse_address(have, b, &ub))
                return streq(want, have);
        return ua || ub || memcmp(a, b, sizeof a) == 0;
}

bool port_mappings_conflict(const VmPort *want, size_t n_want, const VmPort *have, size_t n_have, char **ret_which) {
        for (size_t i = 0; i < n_want; i++)
                for (size_t k = 0; k < n_have; k++) {
                        const VmPort *w = &want[i], *h = &have[k];
                        if (!streq_ptr(w->protocol, h->protocol) || w->host_port != h->host_port ||
                            !address_conflict(w->host_address, h->host_address))
                                continue;
                        if (ret_which)
                                *ret_which = g_strdup_printf("%s %s:%u", strempty(w->protocol),
                                                             isempty(w->host_address) ? "(default address)"
                                                                                      : w->host_address,
                                                             w->host_port);
                        return true;
                }
        return false;
}
