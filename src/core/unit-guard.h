/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* Units the Updater must never restart, because that stops every VM:
 * dstack's own (dstack-vmm, dstack-kms, dstack-gateway, and instances of
 * them as templates: dstack-vmm@main.service), and whatever unit the VMM
 * really runs in, read from /proc/<pid>/cgroup of the process behind
 * VmmUrl: the peer of its unix socket (SO_PEERCRED), or the process holding
 * the listening socket of a loopback port (/proc/self/net/tcp{,6}, then
 * /proc/<pid>/fd). A VMM on another host, or one that cannot be told, leaves
 * only the names. */

/* NULL when unit may be restarted, else why not (caller frees). */
char *unit_guard_check(const char *unit, const char *vmm_url);

/* The unit the VMM behind vmm_url runs in; NULL when it cannot be told. */
char *unit_guard_vmm_unit(const char *vmm_url);

/* The unit of a process, from its cgroup ("x.service"); NULL if none. */
char *unit_of_pid(pid_t pid);
