/* SPDX-License-Identifier: Apache-2.0 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <glib.h>
#include <openssl/evp.h>

#include "core/desired.h"
#include "shared/hex.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define GUEST_VMM_URL_KEY "DSTACK_VMM_URL"

void desired_vm_free(DesiredVm *d) {
        if (!d)
                return;
        g_free(d->name);
        if (d->compose)
                explicit_bzero(d->compose, d->compose_len);
        free(d->compose);
        strv_free(d->allowed_envs);
        strv_free(d->required_env);
        strv_free(d->missing_env);
        strv_free(d->not_granted);
        strv_free(d->not_allowed);
        env_list_clear(&d->env);
        g_free(d->resources);
        vm_configuration_done(&d->config);
        g_free(d);
}

static char *short_sha256(const char *s) {
        uint8_t md[32];
        unsigned n = 0;
        EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
        return hex_encode(md, 8);
}

char *resources_text(const VmConfiguration *c) {
        GString *s = g_string_new(NULL);
        g_string_append_printf(s, "image=%s vcpu=%u memory=%u disk=%u ports=", strempty(c->image), c->vcpu, c->memory,
                               c->disk_size);
        for (size_t i = 0; i < c->n_ports; i++)
                g_string_append_printf(s, "%s%s/%u:%u@%s", i ? "," : "", strempty(c->ports[i].protocol),
                                       c->ports[i].host_port, c->ports[i].vm_port, strempty(c->ports[i].host_address));
        _cleanup_free_ char *uc = short_sha256(strempty(c->user_config));
        g_string_append_printf(s, " user_config=%s hugepages=%d pin_numa=%d", uc, c->hugepages, c->pin_numa);
        return g_string_free(s, FALSE);
}

static bool address_match(const char *want, const char *have) {
        if (isempty(want))
                return true; /* the VMM's default: whatever it resolved it to */
        if (streq_ptr(want, have))
                return true;
        unsigned char a[sizeof(struct in6_addr)] = {}, b[sizeof(struct in6_addr)] = {};
        int af = strchr(want, ':') ? AF_INET6 : AF_INET;
        return have && inet_pton(af, want, a) == 1 && inet_pton(af, have, b) == 1 && memcmp(a, b, sizeof a) == 0;
}

bool vm_ports_match(const VmPort *want, size_t n_want, const VmPort *have, size_t n_have) {
        if (n_want != n_have)
                return false;
        for (size_t i = 0; i < n_want; i++)
                if (!streq_ptr(want[i].protocol, have[i].protocol) || want[i].host_port != have[i].host_port ||
                    want[i].vm_port != have[i].vm_port || !address_match(want[i].host_address, have[i].host_address))
                        return false;
        return true;
}

char *vm_ports_text(const VmPort *p, size_t n) {
        GString *s = g_string_new(NULL);
        for (size_t i = 0; i < n; i++)
                g_string_append_printf(s, "%s%s/%u:%u@%s", i ? "," : "", strempty(p[i].protocol), p[i].host_port,
                                       p[i].vm_port, isempty(p[i].host_address) ? "default" : p[i].host_address);
        return g_string_free(s, FALSE);
}

static int build_config(const PlatformVmSpec *spec, DesiredVm *d) {
        VmConfiguration *c = &d->config;
        c->name = g_strdup(d->name);
        c->image = g_strdup(spec->vm.image);
        c->compose_file = g_strndup(d->compose, d->compose_len);
        c->user_config = g_strdup(strempty(spec->vm.user_config));
        c->vcpu = spec->vm.vcpu;
        c->memory = spec->vm.memory_mb;
        c->disk_size = spec->vm.disk_size_gb;
        c->hugepages = spec->vm.hugepages;
        c->pin_numa = spec->vm.pin_numa;
        c->stopped = spec->vm.stopped;
        c->n_ports = spec->vm.n_ports;
        c->ports = g_new0(VmPort, MAX(spec->vm.n_ports, 1));
        for (size_t i = 0; i < spec->vm.n_ports; i++) {
                const PlatformPort *p = &spec->vm.ports[i];
                c->ports[i].protocol = g_strdup(port_protocol_to_string(p->protocol));
                c->ports[i].host_port = p->host_port;
                c->ports[i].vm_port = p->vm_port;
                c->ports[i].host_address = g_strdup(strempty(p->host_address)); /* never null on the wire */
        }
        return 0;
}

static bool granted(const DesiredOptions *o, const char *key) {
        return !o->granted || strv_contains(o->granted, key);
}

/* Local values of the keys allowed by the compose and granted to the VM,
 * plus DSTACK_VMM_URL unless set locally. */
static int build_env(const LauncherConfig *c, const DesiredOptions *o, DesiredVm *d) {
        g_autofree const char **keys = launcher_config_env_keys(c);
        for (const char **k = keys; *k; k++) {
                int r = 0;
                if (!strv_contains(d->allowed_envs, *k))
                        r = strv_extend(&d->not_allowed, *k);
                else if (granted(o, *k))
                        r = env_list_add(&d->env, *k, launcher_config_env_get(c, *k));
                if (r < 0)
                        return r;
        }
        if (strv_contains(d->allowed_envs, GUEST_VMM_URL_KEY) && !env_list_get(&d->env, GUEST_VMM_URL_KEY))
                return env_list_add(&d->env, GUEST_VMM_URL_KEY, c->guest_vmm_url);
        return 0;
}

static int build_missing(const PlatformVmSpec *spec, const DesiredOptions *o, DesiredVm *d) {
        for (char **k = spec->required_env; *k; k++) {
                int r = strv_extend(&d->required_env, *k);
                if (r >= 0 && !granted(o, *k))
                        r = strv_extend(&d->not_granted, *k);
                else if (r >= 0 && !env_list_get(&d->env, *k))
                        r = strv_extend(&d->missing_env, *k);
                if (r < 0)
                        return r;
        }
        if (!d->required_env)
                d->required_env = g_new0(char *, 1);
        if (!d->missing_env)
                d->missing_env = g_new0(char *, 1);
        if (!d->not_granted)
                d->not_granted = g_new0(char *, 1);
        if (!d->not_allowed)
                d->not_allowed = g_new0(char *, 1);
        return 0;
}

int desired_vm_build(const PlatformVmSpec *spec, const LauncherConfig *c, const uint8_t key[32],
                     const DesiredOptions *o, DesiredVm **ret, char **ret_error) {
        static const DesiredOptions defaults = {};
        DesiredVm *d = g_new0(DesiredVm, 1);
        if (!o)
                o = &defaults;
        d->name = g_strdup(o->name ?: spec->vm.name);

        int r = compose_build(spec, &d->compose, &d->compose_len);
        if (r >= 0)
                r = compose_hash(d->compose, d->compose_len, d->compose_hash);
        if (r >= 0) {
                compose_app_id(d->compose_hash, d->app_id);
                r = compose_allowed_envs(spec, &d->allowed_envs);
        }
        if (r >= 0)
                r = build_env(c, o, d);
        if (r >= 0)
                r = build_missing(spec, o, d);
        if (r >= 0)
                r = env_list_validate(&d->env, ret_error);
        if (r >= 0)
                r = env_fingerprint(&d->env, key, 32, d->env_fingerprint);
        if (r >= 0)
                r = build_config(spec, d);
        if (r < 0) {
                if (!*ret_error)
                        *ret_error = g_strdup_printf("cannot build the VM spec: %s", strerror(-r));
                desired_vm_free(d);
                return r;
        }
        d->resources = resources_text(&d->config);
        *ret = d;
        return 0;
}
