/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "core/unit-guard.h"
#include "shared/macro.h"
#include "shared/url.h"

static const char *const dstack_units[] = { "dstack-vmm", "dstack-kms", "dstack-gateway" };

/* "validator" → "validator.service"; other suffixes stay. */
static char *unit_full_name(const char *unit) {
        const char *dot = strrchr(unit, '.');
        if (dot && (streq(dot, ".service") || streq(dot, ".socket") || streq(dot, ".target") || streq(dot, ".scope") ||
                    streq(dot, ".slice") || streq(dot, ".timer") || streq(dot, ".mount") || streq(dot, ".path")))
                return g_strdup(unit);
        return g_strdup_printf("%s.service", unit);
}

char *unit_of_pid(pid_t pid) {
        g_autofree char *path = g_strdup_printf("/proc/%d/cgroup", (int) pid);
        g_autofree char *text = NULL;
        if (!g_file_get_contents(path, &text, NULL, NULL))
                return NULL;
        /* the unified line ("0::/system.slice/x.service") or systemd's named one */
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                if (!g_str_has_prefix(*l, "0::") && !strstr(*l, ":name=systemd:"))
                        continue;
                g_auto(GStrv) parts = g_strsplit(strchr(*l, '/') ? strchr(*l, '/') : "", "/", -1);
                /* the first unit below the slices; deeper cgroups are the unit's own */
                for (char **p = parts; *p; p++)
                        if (g_str_has_suffix(*p, ".service") || g_str_has_suffix(*p, ".scope"))
                                return g_strdup(*p);
        }
        return NULL;
}

static pid_t unix_peer_pid(const char *path) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return 0;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path)
                return 0;
        memcpy(sa.sun_path, path, strlen(path));
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return 0;
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return 0;
        return cred.pid;
}

/* The inode of a listening TCP socket on port, from /proc/self/net/tcp{,6}. */
static unsigned long listening_inode(unsigned port) {
        static const char *const tables[] = { "/proc/self/net/tcp", "/proc/self/net/tcp6" };
        for (size_t t = 0; t < ELEMENTSOF(tables); t++) {
                g_autofree char *text = NULL;
                if (!g_file_get_contents(tables[t], &text, NULL, NULL))
                        continue;
                g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
                for (char **l = lines; *l; l++) {
                        g_auto(GStrv) f = g_strsplit_set(g_strstrip(*l), " ", -1);
                        /* sl local rem st tx:rx tr:tm retrnsmt uid timeout inode, with empty fields from runs of spaces */
                        const char *field[10];
                        int n = 0;
                        for (char **p = f; *p && n < 10; p++)
                                if (**p)
                                        field[n++] = *p;
                        if (n < 10 || !streq(field[3], "0A"))
                                continue;
                        const char *colon = strrchr(field[1], ':');
                        if (!colon || strtoul(colon + 1, NULL, 16) != port)
                                continue;
                        unsigned long inode = strtoul(field[9], NULL, 10);
                        if (inode > 0)
                                return inode;
                }
        }
        return 0;
}

static pid_t socket_owner_pid(unsigned long inode) {
        g_autofree char *want = g_strdup_printf("socket:[%lu]", inode);
        DIR *proc = opendir("/proc");
        if (!proc)
                return 0;
        pid_t found = 0;
        struct dirent *de;
        while (!found && (de = readdir(proc))) {
                if (!g_ascii_isdigit(de->d_name[0]))
                        continue;
                g_autofree char *fddir = g_strdup_printf("/proc/%s/fd", de->d_name);
                DIR *fds = opendir(fddir);
                if (!fds)
                        continue;
                struct dirent *fe;
                while ((fe = readdir(fds))) {
                        char link[64];
                        ssize_t n = readlinkat(dirfd(fds), fe->d_name, link, sizeof link - 1);
                        if (n <= 0)
                                continue;
                        link[n] = 0;
                        if (streq(link, want)) {
                                found = (pid_t) atoi(de->d_name);
                                break;
                        }
                }
                closedir(fds);
        }
        closedir(proc);
        return found;
}

/* "http://localhost:10300/x" → 10300 when the host is a loopback name or address; 0 otherwise. */
static unsigned loopback_port(const char *url) {
        const char *rest = g_str_has_prefix(url, "http://") ? url + 7 : g_str_has_prefix(url, "https://") ? url + 8 : NULL;
        if (!rest)
                return 0;
        g_autofree char *authority = g_strndup(rest, strcspn(rest, "/?#"));
        const char *host = authority, *port = NULL;
        g_autofree char *h = NULL;
        if (authority[0] == '[') {
                const char *close = strchr(authority, ']');
                if (!close)
                        return 0;
                h = g_strndup(authority + 1, (size_t) (close - authority - 1));
                port = close[1] == ':' ? close + 2 : NULL;
        } else {
                const char *colon = strrchr(authority, ':');
                h = colon ? g_strndup(authority, (size_t) (colon - authority)) : g_strdup(authority);
                port = colon ? colon + 1 : NULL;
        }
        host = h;
        if (!streq(host, "localhost") && !g_str_has_prefix(host, "127.") && !streq(host, "::1"))
                return 0;
        unsigned p = port ? (unsigned) strtoul(port, NULL, 10) : g_str_has_prefix(url, "https:") ? 443 : 80;
        return p <= 65535 ? p : 0;
}

char *unit_guard_vmm_unit(const char *vmm_url) {
        if (isempty(vmm_url))
                return NULL;
        pid_t pid = 0;
        const char *sock = url_unix_path(vmm_url);
        if (sock)
                pid = unix_peer_pid(sock);
        else {
                unsigned port = loopback_port(vmm_url);
                unsigned long inode = port ? listening_inode(port) : 0;
                pid = inode ? socket_owner_pid(inode) : 0;
        }
        return pid > 0 ? unit_of_pid(pid) : NULL;
}

char *unit_guard_check(const char *unit, const char *vmm_url) {
        g_autofree char *full = unit_full_name(unit);
        size_t base = strcspn(full, "@.");
        for (size_t i = 0; i < ELEMENTSOF(dstack_units); i++)
                if (base == strlen(dstack_units[i]) && strncmp(full, dstack_units[i], base) == 0)
                        return g_strdup_printf("%s is %s%s (restarting it stops every VM)", unit, dstack_units[i],
                                               full[base] == '@' ? " (an instance of it)" : "");
        g_autofree char *vmm = unit_guard_vmm_unit(vmm_url);
        if (vmm && streq(vmm, full))
                return g_strdup_printf("%s is the unit the VMM at %s runs in (restarting it stops every VM)", unit,
                                       vmm_url);
        return NULL;
}
