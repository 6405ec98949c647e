/* SPDX-License-Identifier: Apache-2.0 */
/* The reconciler's decision, desired vs observed vs recorded, without any I/O. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "core/desired.h"
#include "core/plan.h"
#include "core/port-conflict.h"
#include "shared/strv.h"
#include "shared/macro.h"
#include "tests.h"

static const char doc_template[] =
        "{\"vm_type\":\"validator_vm\",\"compose_content\":\"services:\\n  app:\\n    image: \\\"nginx:latest\\\"\\n\","
        "\"required_env\":%s,\"provisioning\":{\"env_keys\":[\"DSTACK_VMM_URL\",\"HOTKEY_PASSPHRASE\",\"VALIDATOR_BASE_URL\"],"
        "\"manifest_defaults\":{\"manifest_version\":2,\"name\":\"validator_vm\",\"runner\":\"docker-compose\","
        "\"kms_enabled\":true,\"gateway_enabled\":true,\"local_key_provider_enabled\":false,\"key_provider_id\":\"\","
        "\"public_logs\":true,\"public_sysinfo\":true,\"public_tcbinfo\":true,\"no_instance_id\":false,\"secure_time\":false},"
        "\"vm_parameters\":{\"name\":\"validator_vm\",\"image\":\"%s\",\"vcpu\":16,\"memory\":16384,\"disk_size\":200,"
        "\"user_config\":\"\",\"ports\":[{\"protocol\":\"tcp\",\"host_port\":0,\"vm_port\":0,\"host_address\":null}],"
        "\"hugepages\":false,\"pin_numa\":false,\"stopped\":false}}}";

static const uint8_t key[32] = { 1, 2, 3 };

static DesiredVm *desired(const char *required, const char *image, const char *hotkey) {
        g_autofree char *doc = g_strdup_printf(doc_template, required, image);
        PlatformVmSpec *spec = NULL;
        char *err = NULL;
        assert_se(platform_vm_spec_parse(doc, strlen(doc), &spec, &err) == 0);
        g_autoptr(LauncherConfig) c = launcher_config_new_default();
        if (hotkey)
                launcher_config_env_set(c, "HOTKEY_PASSPHRASE", hotkey);
        DesiredVm *d = NULL;
        assert_se(desired_vm_build(spec, c, key, NULL, &d, &err) == 0);
        platform_vm_spec_free(spec);
        return d;
}

/* A VM as the VMM would report one deployed from d. */
static void vm_from(VmInfo *vm, const DesiredVm *d, const char *id, VmStatus status) {
        memset(vm, 0, sizeof *vm);
        vm->id = g_strdup(id);
        vm->name = g_strdup(d->name);
        vm->status = status;
        vm->app_id = g_strdup(d->app_id);
        vm->has_configuration = true;
        VmConfiguration *c = &vm->configuration;
        *c = d->config;
        c->name = g_strdup(d->config.name);
        c->image = g_strdup(d->config.image);
        c->compose_file = g_strdup(d->config.compose_file);
        c->user_config = g_strdup(d->config.user_config);
        c->ports = g_new0(VmPort, d->config.n_ports + 1);
        for (size_t i = 0; i < d->config.n_ports; i++) {
                c->ports[i] = d->config.ports[i];
                c->ports[i].protocol = g_strdup(d->config.ports[i].protocol);
                c->ports[i].host_address = g_strdup(d->config.ports[i].host_address);
        }
}

static VmDeployState *deployed(const DesiredVm *d, const char *id) {
        VmDeployState *s = vm_deploy_state_new("validator_vm");
        g_free(s->vm_id), s->vm_id = g_strdup(id);
        g_free(s->compose_hash), s->compose_hash = g_strdup(d->compose_hash);
        g_free(s->env_fingerprint), s->env_fingerprint = g_strdup(d->env_fingerprint);
        return s;
}

static Plan plan(const DesiredVm *d, const VmInfo *vms, size_t n, const VmDeployState *st, bool in_place) {
        PlanInput in = { .desired = d, .vms = vms, .n_vms = n, .state = st, .in_place = in_place };
        Plan p;
        assert_se(plan_compute(&in, &p) == 0);
        return p;
}

static bool has_change(const Plan *p, const char *field) {
        for (char **c = p->changes; c && *c; c += 3)
                if (streq(*c, field))
                        return true;
        return false;
}

int main(void) {
        DesiredVm *d = desired("[\"HOTKEY_PASSPHRASE\"]", "dstack-0.5.2", "s3");
        VmInfo vm[2];
        Plan p;
        DesiredVm *d3_early;

        /* Nothing yet: create. */
        p = plan(d, NULL, 0, NULL, false);
        assert_se(p.action == PLAN_CREATE && !p.keep);
        plan_done(&p);

        /* Exactly what we deployed, running: nothing, and no change listed. */
        vm_from(&vm[0], d, "id-1", VM_STATUS_RUNNING);
        VmDeployState *st = deployed(d, "id-1");
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_NONE && p.changes[0] == NULL && p.keep == &vm[0]);
        plan_done(&p);

        /* Crashed: start it again. */
        vm[0].status = VM_STATUS_EXITED;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_START);
        plan_done(&p);

        /* Stopped by the operator: left alone, even with changes. */
        vm[0].status = VM_STATUS_STOPPED;
        st->operator_stopped = true;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_NONE && strstr(p.reason, "operator"));
        plan_done(&p);
        st->operator_stopped = false;
        vm[0].status = VM_STATUS_RUNNING;

        /* Stopping with nothing to change: wait for it. */
        vm[0].status = VM_STATUS_STOPPING;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_WAIT);
        plan_done(&p);
        vm[0].status = VM_STATUS_RUNNING;

        /* A VM we did not record (the Rust launcher's): its env is unknown, so
         * it is adopted, never replaced silently; redeploying it means a
         * recreate (or in place), with the env listed as unknown. */
        VmDeployState *fresh = vm_deploy_state_new("validator_vm");
        p = plan(d, vm, 1, fresh, false);
        assert_se(p.action == PLAN_ADOPT && p.adopt_action == PLAN_RECREATE && streq(plan_action_to_string(p.action), "adopt"));
        assert_se(has_change(&p, "env") && !has_change(&p, "compose_hash"));
        assert_se(g_str_has_prefix(p.reason, "adopt: the env of the running VM cannot be read"));
        assert_se(strstr(p.reason, "platformctl vm update") && strstr(p.reason, "AdoptPolicy=redeploy"));
        plan_done(&p);
        p = plan(d, vm, 1, fresh, true);
        assert_se(p.action == PLAN_ADOPT && p.adopt_action == PLAN_UPDATE_IN_PLACE);
        plan_done(&p);
        p = plan(d3_early = desired("[\"HOTKEY_PASSPHRASE\"]", "dstack-0.5.9", "s3"), vm, 1, fresh, true);
        assert_se(p.action == PLAN_ADOPT && p.adopt_action == PLAN_RECREATE && has_change(&p, "image"));
        plan_done(&p);
        desired_vm_free(d3_early);
        /* ... also with no state at all, and when it exited (then it is started as it is). */
        p = plan(d, vm, 1, NULL, false);
        assert_se(p.action == PLAN_ADOPT);
        plan_done(&p);
        vm[0].status = VM_STATUS_EXITED;
        p = plan(d, vm, 1, fresh, false);
        assert_se(p.action == PLAN_ADOPT && strstr(p.reason, "exited") && strstr(p.reason, "started as it is"));
        plan_done(&p);
        vm[0].status = VM_STATUS_RUNNING;
        /* ... but a VM we deployed is never adopted, whatever differs. */
        vm[0].configuration.vcpu = 2;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE);
        plan_done(&p);
        vm[0].configuration.vcpu = 16;

        /* ... unless an interrupted deployment recorded it as the intent. */
        fresh->intent = vm_intent_new("recreate", "old", d->compose_hash, d->env_fingerprint, d->resources);
        p = plan(d, vm, 1, fresh, false);
        assert_se(p.action == PLAN_NONE);
        plan_done(&p);
        /* An interrupted in-place update is finished by a restart: the plan says so. */
        vm_intent_free(fresh->intent);
        fresh->intent = vm_intent_new("in-place", "id-1", d->compose_hash, d->env_fingerprint, d->resources);
        p = plan(d, vm, 1, fresh, false);
        assert_se(p.action == PLAN_UPDATE_IN_PLACE && strstr(p.reason, "interrupted"));
        plan_done(&p);
        vm_deploy_state_free(fresh);

        /* A changed secret: recreate (or in place), listed by key name only. */
        DesiredVm *d2 = desired("[\"HOTKEY_PASSPHRASE\"]", "dstack-0.5.2", "new secret");
        p = plan(d2, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE && has_change(&p, "env"));
        for (char **c = p.changes; *c; c++)
                assert_se(!strstr(*c, "new secret") && !strstr(*c, "s3"));
        plan_done(&p);
        p = plan(d2, vm, 1, st, true);
        assert_se(p.action == PLAN_UPDATE_IN_PLACE);
        plan_done(&p);

        /* ... also when the old VM is stuck stopping: the stop goes hard at the deadline. */
        vm[0].status = VM_STATUS_STOPPING;
        p = plan(d2, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE);
        plan_done(&p);
        vm[0].status = VM_STATUS_RUNNING;

        /* A new image cannot be applied in place. */
        DesiredVm *d3 = desired("[\"HOTKEY_PASSPHRASE\"]", "dstack-0.5.3", "s3");
        p = plan(d3, vm, 1, st, true);
        assert_se(p.action == PLAN_RECREATE && has_change(&p, "image") && has_change(&p, "compose_hash") == false);
        plan_done(&p);

        /* Resources: each one detected. */
        vm[0].configuration.vcpu = 8;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE && has_change(&p, "vcpu"));
        plan_done(&p);
        vm[0].configuration.vcpu = 16;
        vm[0].configuration.ports[0].host_port = 8080;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE && has_change(&p, "ports"));
        plan_done(&p);
        vm[0].configuration.ports[0].host_port = 0;

        /* Duplicates: keep the one we recorded, the other goes. */
        vm_from(&vm[1], d, "id-2", VM_STATUS_RUNNING);
        p = plan(d, vm, 2, st, false);
        assert_se(p.action == PLAN_NONE && p.keep == &vm[0] && p.n_extra == 1 && p.extra[0] == &vm[1]);
        plan_done(&p);
        p = plan(d, (VmInfo[]) { vm[1], vm[0] }, 2, st, false);
        assert_se(streq(p.keep->id, "id-1") && p.n_extra == 1 && streq(p.extra[0]->id, "id-2"));
        plan_done(&p);

        /* Only a VM being removed: wait for it to go. */
        vm[0].status = VM_STATUS_REMOVING;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_WAIT && !p.keep);
        plan_done(&p);
        vm[0].status = VM_STATUS_RUNNING;

        /* Missing required env: blocked, naming the key, whatever runs. */
        DesiredVm *d4 = desired("[\"HOTKEY_PASSPHRASE\",\"EXTRA_KEY\"]", "dstack-0.5.2", "s3");
        p = plan(d4, vm, 1, st, false);
        assert_se(p.action == PLAN_BLOCKED && streq(p.reason, "missing env: EXTRA_KEY"));
        assert_se(p.keep == &vm[0] && streq(p.keep_compose_hash, d->compose_hash)); /* still observed */
        plan_done(&p);

        /* No usable spec. */
        PlanInput in = { .blocked_reason = "invalid spec from the Platform API: x", .name = "validator_vm",
                         .vms = vm, .n_vms = 1, .state = st };
        assert_se(plan_compute(&in, &p) == 0 && p.action == PLAN_BLOCKED && strstr(p.reason, "invalid spec"));
        assert_se(p.keep == &vm[0]);
        plan_done(&p);

        /* Ports by meaning (dstack.md §2): the API's one port has host_address
         * null, the VMM reports it resolved. Nothing to do, on every poll. */
        g_free(vm[0].configuration.ports[0].host_address);
        vm[0].configuration.ports[0].host_address = g_strdup("127.0.0.1");
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_NONE && !has_change(&p, "ports"));
        plan_done(&p);
        /* A port that really differs is still a change. */
        vm[0].configuration.ports[0].vm_port = 8080;
        p = plan(d, vm, 1, st, false);
        assert_se(p.action == PLAN_RECREATE && has_change(&p, "ports"));
        plan_done(&p);
        vm[0].configuration.ports[0].vm_port = 0;

        VmPort want[] = { { .protocol = "tcp", .host_port = 80, .vm_port = 8080, .host_address = "" } };
        VmPort have[] = { { .protocol = "tcp", .host_port = 80, .vm_port = 8080, .host_address = "127.0.0.1" } };
        assert_se(vm_ports_match(want, 1, have, 1));
        want[0].host_address = "127.0.0.1";
        assert_se(vm_ports_match(want, 1, have, 1));
        want[0].host_address = "10.0.0.1";
        assert_se(!vm_ports_match(want, 1, have, 1));
        want[0].host_address = "::1";
        have[0].host_address = "0:0:0::1";
        assert_se(vm_ports_match(want, 1, have, 1));
        want[0].host_address = NULL;
        have[0].protocol = "udp";
        assert_se(!vm_ports_match(want, 1, have, 1));
        assert_se(!vm_ports_match(want, 1, have, 0));
        g_autofree char *text = vm_ports_text(want, 1);
        assert_se(streq(text, "tcp/80:8080@default"));

        /* Host port conflicts (HEAD main_service.rs port_mappings_conflict). */
        struct {
                const char *proto_a, *addr_a;
                unsigned port_a;
                const char *proto_b, *addr_b;
                unsigned port_b;
                bool conflict;
        } cases[] = {
                { "tcp", "127.0.0.1", 8080, "tcp", "127.0.0.1", 8080, true },
                { "tcp", "127.0.0.1", 8080, "tcp", "127.0.0.2", 8080, false },
                { "tcp", "0.0.0.0", 8080, "tcp", "127.0.0.2", 8080, true },
                { "tcp", "127.0.0.1", 8080, "tcp", "::", 8080, true },
                { "tcp", "::1", 8080, "tcp", "0:0::1", 8080, true },
                { "tcp", "::1", 8080, "tcp", "127.0.0.1", 8080, false },
                { "tcp", "", 8080, "tcp", "10.1.2.3", 8080, true },     /* the VMM's default: unknown */
                { "tcp", NULL, 8080, "tcp", "10.1.2.3", 8080, true },
                { "tcp", "127.0.0.1", 8080, "udp", "127.0.0.1", 8080, false },
                { "tcp", "127.0.0.1", 8080, "tcp", "127.0.0.1", 8081, false },
                { "tcp", "127.0.0.1", 0, "tcp", "127.0.0.1", 0, true },  /* as HEAD */
        };
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                VmPort a = { .protocol = (char *) cases[i].proto_a, .host_port = cases[i].port_a,
                             .host_address = (char *) cases[i].addr_a };
                VmPort b = { .protocol = (char *) cases[i].proto_b, .host_port = cases[i].port_b,
                             .host_address = (char *) cases[i].addr_b };
                VmPort two[] = { { .protocol = "udp", .host_port = 1, .host_address = "1.2.3.4" }, b };
                g_autofree char *which = NULL;
                assert_se(port_mappings_conflict(&a, 1, &b, 1, NULL) == cases[i].conflict);
                assert_se(port_mappings_conflict(&a, 1, two, 2, &which) == cases[i].conflict);
                assert_se(!!which == cases[i].conflict);
                assert_se(!port_mappings_conflict(&a, 1, NULL, 0, NULL) && !port_mappings_conflict(NULL, 0, &b, 1, NULL));
        }
        {
                VmPort a = { .protocol = "tcp", .host_port = 8080, .host_address = "127.0.0.1" };
                g_autofree char *which = NULL;
                assert_se(port_mappings_conflict(&a, 1, &a, 1, &which) && streq(which, "tcp 127.0.0.1:8080"));
        }

        /* A rename: the VM under the old name (retired) maps the same host
         * port (the API's tcp port 0, "" = the VMM's default address): it is
         * stopped and removed first, a recreate with it as the old VM. */
        VmDeployState *renamed = vm_deploy_state_new("validator_vm");
        (void) strv_extend(&renamed->retired_ids, "id-old");
        (void) strv_extend(&renamed->retired_names, "old_name");
        VmInfo other;
        vm_from(&other, d, "id-old", VM_STATUS_RUNNING);
        g_free(other.name), other.name = g_strdup("old_name");
        p = plan(d, &other, 1, renamed, false);
        assert_se(p.action == PLAN_RECREATE && !p.keep && p.replaced == &other);
        assert_se(strstr(p.reason, "id-old (old_name)") && strstr(p.reason, "host port tcp (default address):0"));
        assert_se(has_change(&p, "vm"));
        plan_done(&p);
        /* ... also when it is stopped (HEAD counts every VM) ... */
        other.status = VM_STATUS_STOPPED;
        p = plan(d, &other, 1, renamed, false);
        assert_se(p.action == PLAN_RECREATE && p.replaced == &other);
        plan_done(&p);
        /* ... but one being removed is waited for. */
        other.status = VM_STATUS_REMOVING;
        p = plan(d, &other, 1, renamed, false);
        assert_se(p.action == PLAN_WAIT && strstr(p.reason, "id-old") && !p.replaced);
        plan_done(&p);
        other.status = VM_STATUS_RUNNING;
        /* No shared host port: the new VM is created beside it (it goes once the new one runs). */
        other.configuration.ports[0].host_port = 9000;
        p = plan(d, &other, 1, renamed, false);
        assert_se(p.action == PLAN_CREATE && !p.replaced);
        plan_done(&p);
        other.configuration.ports[0].host_port = 0;
        /* A VM with the same port that this deployment does not replace is not touched. */
        p = plan(d, &other, 1, st, false);
        assert_se(p.action == PLAN_CREATE && !p.replaced);
        plan_done(&p);
        vm_info_done(&other);
        vm_deploy_state_free(renamed);

        /* DSTACK_VMM_URL is provided from GuestVmmUrl. */
        assert_se(streq(env_list_get(&d->env, "DSTACK_VMM_URL"), "http://10.0.2.2:10300/"));

        vm_info_done(&vm[0]);
        vm_info_done(&vm[1]);
        vm_deploy_state_free(st);
        desired_vm_free(d);
        desired_vm_free(d2);
        desired_vm_free(d3);
        desired_vm_free(d4);
        printf("test-plan: ok\n");
        return 0;
}
