/* SPDX-License-Identifier: Apache-2.0 */
/* Deploying the VM wanted: the checks that can be made before anything is
 * touched (the names and ports the VMM takes, the env encrypted to the key of
 * the app id the VM will run with, the compose hash as the VMM computes it),
 * then create, or update in place, then record; each strategy one table. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <glib.h>

#include "core/deploy.h"
#include "core/kms-trust.h"
#include "core/operation.h"
#include "core/vm-steps.h"
#include "shared/hex.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define BACKOFF_MIN_USEC (5 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (3600 * USEC_PER_SEC)

static VmmClient *vmm(Operation *op) {
        return op_host(op)->vmm;
}

/* ---- prepare-checks: what can be known before anything is touched ---- */

static bool is_ip_address(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* VM names (HEAD main_service.rs validate_label; v0.5.5 is stricter). */
static const char *name_problem(const char *name, const VmmVersion *v) {
        bool old = v && vmm_version_compare(v, &(VmmVersion) { 0, 5, 6 }) < 0;
        if (isempty(name))
                return "it is empty";
        for (const char *c = name; *c; c++) {
                if (g_ascii_isalnum(*c) || *c == '-' || *c == '_')
                        continue;
                if (!old && strchr(". @~!$^()", *c))
                        continue;
                return old ? "this VMM (before 0.5.6) accepts only letters, digits, '-' and '_'"
                           : "the VMM accepts only letters, digits and - _ . space @ ~ ! $ ^ ( )";
        }
        return NULL;
}

static void block(Operation *op, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void block(Operation *op, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_autofree char *m = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        step_fail_kind(op, RECONCILER_ERROR_BLOCKED, m);
}

static void check_name(Operation *op, const VmmVersion *v) {
        const char *why = name_problem(op->desired->name, v);
        if (why)
                return block(op, "vm_parameters.name '%.64s' cannot be used: %s", op->desired->name, why);
        step_driver_done(op_driver(op));
}

static void on_version(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        VmmVersion v;
        /* A VMM that cannot say its version is held to the newer rules. */
        check_name(op, res->error >= 0 && vmm_client_get_version(vmm(op), &v) ? &v : NULL);
}

/* In-place: ports go to UpdateVm only when they changed, and then each with a
 * real address, since UpdateVm has no default for "" (dstack.md §2). */
static int in_place_ports(Operation *op, char **ret_error) {
        const VmConfiguration *want = &op->desired->config, *have = &op->plan.keep->configuration;
        op->deploy.update_ports = !vm_ports_match(want->ports, want->n_ports, have->ports, have->n_ports);
        if (!op->deploy.update_ports)
                return 0;
        op->deploy.send_ports = g_new0(VmPort, MAX(want->n_ports, 1));
        op->deploy.n_send_ports = want->n_ports;
        for (size_t i = 0; i < want->n_ports; i++) {
                const VmPort *w = &want->ports[i];
                const char *addr = w->host_address;
                if (isempty(addr)) {
                        /* The address the VMM resolved for this very mapping. */
                        for (size_t k = 0; k < have->n_ports && isempty(addr); k++)
                                if (streq_ptr(have->ports[k].protocol, w->protocol) &&
                                    have->ports[k].host_port == w->host_port && have->ports[k].vm_port == w->vm_port)
                                        addr = have->ports[k].host_address;
                }
                if (isempty(addr)) {
                        *ret_error = g_strdup_printf(
                                "vm_parameters.ports[%zu].host_address is empty, and UpdateVm needs an IP address "
                                "for a new port mapping: set host_address in the spec, or use the recreate strategy",
                                i);
                        return -EINVAL;
                }
                op->deploy.send_ports[i] = (VmPort) { .protocol = g_strdup(w->protocol), .host_port = w->host_port,
                                                      .vm_port = w->vm_port, .host_address = g_strdup(addr) };
        }
        return 0;
}

static void checks_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        const VmConfiguration *c = &op->desired->config;
        const Observer *o = &op_host(op)->observer;

        if (c->n_ports > 0 && !o->status.port_mapping_enabled)
                return block(op, "the spec maps %zu port(s) (vm_parameters.ports), but port mapping is disabled "
                                 "at the VMM: set [cvm.port_mapping] enabled = true in vmm.toml, or drop the ports",
                             c->n_ports);
        for (size_t i = 0; i < c->n_ports; i++)
                if (!isempty(c->ports[i].host_address) && !is_ip_address(c->ports[i].host_address))
                        return block(op, "vm_parameters.ports[%zu].host_address '%.64s' is not an IP address", i,
                                     c->ports[i].host_address);
        if (op->plan.action == PLAN_UPDATE_IN_PLACE) {
                g_autofree char *why = NULL;
                if (in_place_ports(op, &why) < 0)
                        return block(op, "%s", why);
        }

        VmmVersion v;
        if (vmm_client_get_version(vmm(op), &v))
                return check_name(op, &v);
        if (vmm_version(vmm(op), on_version, op, &op->vmm_call) < 0)
                check_name(op, NULL);
}

/* ---- encrypt, cross-check: the old VM is still untouched ---- */

/* Only a key from a trusted KMS gets the secrets (core/kms-trust.h). Returns
 * false when the operation is blocked. */
static bool kms_trusted(Operation *op, const VmmPubKeyReply *k) {
        ManagedVm *mv = op->mv;
        const LauncherConfig *c = op_host(op)->settings->config;
        KmsTrustInput in = { .app_id = op->deploy.app_id, .reply = k, .trusted = c->trusted_kms_signers,
                             .max_age_usec = c->kms_signature_max_age_usec, .pinned = mv->state->kms_signer_pinned,
                             .now_sec = clock_usec(CLOCK_REALTIME) / USEC_PER_SEC };
        _cleanup_(kms_trust_result_done) KmsTrustResult t = {};
        if (kms_trust_check(&in, &t) < 0 || t.blocked) {
                step_fail_kind(op, RECONCILER_ERROR_BLOCKED, t.blocked ?: "internal error: bad app id");
                return false;
        }
        if (t.warning)
                log_warning("%s", t.warning);
        if (t.pin) {
                log_notice("Pinning KMS signer %s (first use; TrustedKmsSigners is empty).", t.signer);
                g_free(mv->state->kms_signer_pinned), mv->state->kms_signer_pinned = g_strdup(t.signer);
                (void) managed_vm_save_state(mv);
        }
        g_free(op->deploy.kms_signer), op->deploy.kms_signer = g_strdup(t.signer);
        return true;
}

static void on_pubkey(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("cannot get the env encryption key for app %s: %s",
                                                     op->deploy.app_id, res->message);
                return step_fail_kind(op, steps_error_kind(res), m);
        }
        if (!kms_trusted(op, res->pubkey))
                return;

        g_auto(GStrv) dropped = NULL;
        g_autofree char *why = NULL;
        int q = env_encrypt(&op->desired->env, op->desired->allowed_envs, res->pubkey->public_key,
                            &op->deploy.encrypted_env, &dropped, &why);
        if (q < 0) {
                g_autofree char *m = g_strdup_printf("cannot encrypt the env: %s", why ?: strerror(-q));
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, m);
        }
        step_driver_done(op_driver(op));
}

static void encrypt_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        if (isempty(op->deploy.app_id))
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "the VM to update has no app id");
        if (vmm_get_app_env_encrypt_pubkey(vmm(op), op->deploy.app_id, on_pubkey, op, &op->vmm_call) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send GetAppEnvEncryptPubKey");
}

static const char *intent_word(PlanAction a) {
        return a == PLAN_UPDATE_IN_PLACE ? "in-place" : a == PLAN_RECREATE ? "recreate" : "create";
}

static void on_compose_hash(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        op->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("compose hash cross-check failed: %s", res->message);
                return step_fail_kind(op, steps_error_kind(res), m);
        }
        if (!streq(res->hash, op->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("the VMM computes compose hash %s, the launcher %s", res->hash,
                                                     op->desired->compose_hash);
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, m);
        }
        /* Before the first destructive step: what is about to happen. */
        vm_intent_free(mv->state->intent);
        mv->state->intent = vm_intent_new(intent_word(op->plan.action), strempty(op->act_id),
                                          op->desired->compose_hash, op->desired->env_fingerprint,
                                          op->desired->resources);
        if (managed_vm_save_state(mv) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot record the intent in the state store");
        step_driver_done(op_driver(op));
}

static void cross_check_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        if (vmm_get_compose_hash(vmm(op), &op->desired->config, on_compose_hash, op, &op->vmm_call) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send GetComposeHash");
}

/* ---- create ---- */

static void on_created(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("CreateVm failed: %s", res->message);
                return step_fail_kind(op, steps_error_kind(res), m);
        }
        op->deploy.new_id = g_strdup(res->id);
        vm_set_str(op->mv->vm, &op->mv->vm->id, op->deploy.new_id);
        step_driver_done(op_driver(op));
}

static void create_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;
        if (hex_decode(op->deploy.encrypted_env, &env, &env_len) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");

        VmConfiguration conf = op->desired->config; /* borrowed: freed with desired */
        conf.encrypted_env = env;
        conf.encrypted_env_len = env_len;
        conf.app_id = NULL; /* the VMM derives it from the compose: the app id we encrypted to */
        op->deploy.touched = true;
        if (vmm_create_vm(vmm(op), &conf, on_created, op, &op->vmm_call) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send CreateVm");
}

/* ---- update in place: UpdateVm, then read back what the VM will boot ---- */

static void on_read_back(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        char hash[COMPOSE_HASH_HEX_LEN + 1] = "";
        if (res->error < 0)
                return step_fail_kind(op, steps_error_kind(res), res->message);
        const VmInfo *vm = res->info->found ? res->info->info : NULL;
        if (vm && vm->has_configuration && vm->configuration.compose_file)
                (void) compose_hash(vm->configuration.compose_file, strlen(vm->configuration.compose_file), hash);
        if (!streq(hash, op->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("after UpdateVm the VM has compose hash %s, not %s",
                                                     hash[0] ? hash : "(none)", op->desired->compose_hash);
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, m);
        }
        step_driver_done(op_driver(op));
}

static void on_updated(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("%s; the VM is unchanged", res->message);
                return step_fail_kind(op, steps_error_kind(res), m);
        }
        /* The reply's id is the new compose's hash prefix, or "": not the VM's
         * app id (dstack.md §2), so it is not used. */
        op->deploy.touched = true;
        if (vmm_get_info(vmm(op), op->act_id, on_read_back, op, &op->vmm_call) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

static void update_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        const DesiredVm *dv = op->desired;
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;

        if (hex_decode(op->deploy.encrypted_env, &env, &env_len) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");
        VmmUpdateRequest u = {
                .id = op->act_id,
                .compose_file = dv->compose,
                .encrypted_env = env,
                .encrypted_env_len = env_len,
                .user_config = dv->config.user_config,
                .update_ports = op->deploy.update_ports,
                .ports = op->deploy.send_ports,
                .n_ports = op->deploy.update_ports ? op->deploy.n_send_ports : 0,
        };
        if (vmm_update_vm(vmm(op), &u, on_updated, op, &op->vmm_call) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send UpdateVm");
}

/* ---- record ---- */

/* A VM under an old name that the deployment removed to free its host ports. */
static void forget_retired(Operation *op) {
        VmDeployState *st = op->mv->state;
        for (size_t i = 0; op->deploy.removed && op->act_id && st->retired_ids && st->retired_ids[i]; i++)
                if (streq(st->retired_ids[i], op->act_id)) {
                        log_notice("Removed VM %s, which ran under the old name %s, before creating its "
                                   "replacement.", op->act_id, st->retired_names[i]);
                        strv_drop(st->retired_ids, i);
                        strv_drop(st->retired_names, i);
                        return;
                }
}

static void save_deployed(Operation *op, const char *id, const char *app_id) {
        ManagedVm *mv = op->mv;
        VmDeployState *st = mv->state;
        const DesiredVm *d = op->desired;

        if (isempty(op->deploy.old_compose_hash)) {
                g_free(op->deploy.old_compose_hash);
                op->deploy.old_compose_hash = g_strdup(st->compose_hash);
        }
        g_free(st->vm_id), st->vm_id = g_strdup(id);
        g_free(st->compose_hash), st->compose_hash = g_strdup(d->compose_hash);
        g_free(st->app_id), st->app_id = g_strdup(app_id);
        g_free(st->env_fingerprint), st->env_fingerprint = g_strdup(d->env_fingerprint);
        g_free(st->resources), st->resources = g_strdup(d->resources);
        if (op->deploy.kms_signer)
                g_free(st->kms_signer), st->kms_signer = g_strdup(op->deploy.kms_signer);
        st->last_update_usec = clock_usec(CLOCK_REALTIME);
        st->update_count++;
        st->operator_stopped = false;
        vm_intent_free(st->intent), st->intent = NULL;
        forget_retired(op);
        (void) managed_vm_save_state(mv);
        op->deploy.done = true;
}

/* After a change, look once more before announcing it, so that Plan() and
 * the next decision start from what the VMM now reports. */
static void on_final_status(const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->observe_wait = NULL;
        step_driver_done(op_driver(op));
}

static void cancel_observe(void *userdata) {
        Operation *op = userdata;
        observer_wait_cancel(&op_host(op)->observer, g_steal_pointer(&op->observe_wait));
}

static void record_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        Host *h = op_host(op);
        save_deployed(op, op->deploy.new_id ?: op->act_id, op->deploy.app_id);
        if (observer_request(&h->observer, h->vmm, clock_usec(CLOCK_MONOTONIC), on_final_status, op,
                             &op->observe_wait) < 0)
                step_driver_done(d);
}

/* A crash between CreateVm and recording it: the VM running is the one meant. */
static void adopt_created_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        const VmInfo *vm = op->plan.keep;
        log_notice("Adopting VM %s created before an interruption.", vm->id);
        save_deployed(op, vm->id, vm->app_id);
        step_driver_done(d);
}

/* ---- a deployment that failed ---- */

static void deploy_failed(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        Host *h = mv->host;
        const char *why = step_driver_failure_message(d);
        ReconcilerError error = op->fail_kind;
        g_autofree char *m = NULL;

        if (error == RECONCILER_ERROR_BLOCKED) {
                m = text_bound(why);
                managed_vm_set_state(mv, VM_STATE_BLOCKED, m);
        } else if (!op->deploy.touched)
                m = text_bound(why);
        else {
                g_autofree char *full = g_strdup_printf("%s%s", why, op->deploy.removed ? "; the old VM was removed" : "");
                m = text_bound(full);
                managed_vm_set_state(mv, VM_STATE_FAILED, m);
        }
        /* The old VM is in place unless the reason says otherwise. */
        mv->fail_backoff_usec = mv->fail_backoff_usec ? MIN(2 * mv->fail_backoff_usec, BACKOFF_MAX_USEC) : BACKOFF_MIN_USEC;
        managed_vm_note_error(mv, error == RECONCILER_ERROR_BLOCKED ? ERROR_CAUSE_BLOCKED : ERROR_CAUSE_UPDATE, m);
        managed_vm_flush(mv);
        if (h->ev.update_failed)
                h->ev.update_failed(mv->vm, op->desired ? op->desired->compose_hash : "", m, h->ev.userdata);
        g_free(op->failure);
        op->failure = g_steal_pointer(&m);
        op->deploy.failed = true;
        step_driver_done(d);
}

/* ---- the tables ---- */

#define STEP_CHECKS                                                                                   \
        { .name = "prepare-checks", .description = "checking the spec against the VMM", .start = checks_start, \
          .cancel = step_cancel_call }
#define STEP_ENCRYPT                                                                                  \
        { .name = "encrypt", .description = "encrypting the env to the VM's key", .start = encrypt_start, \
          .cancel = step_cancel_call }
#define STEP_CROSS_CHECK                                                                              \
        { .name = "cross-check", .description = "cross-checking the compose hash with the VMM",           \
          .start = cross_check_start, .cancel = step_cancel_call }
#define STEP_CREATE                                                                                   \
        { .name = "create", .description = "creating the VM", .start = create_start, .cancel = step_cancel_call, \
          .vm_state = VM_STATE_CREATING }
#define STEP_UPDATE                                                                                   \
        { .name = "update", .description = "updating the VM in place", .start = update_start,              \
          .cancel = step_cancel_call, .vm_state = VM_STATE_UPDATING }
#define STEP_RECORD                                                                                   \
        { .name = "record", .description = "recording the deployment", .start = record_start,              \
          .cancel = cancel_observe }

static const StepDef deploy_failed_steps[] = {
        { .name = "deploy-failed", .description = "noting the failure", .start = deploy_failed },
};
static const StepTable table_deploy_failed = STEP_TABLE("deploy-failed", deploy_failed_steps);

static const StepDef create_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK, STEP_CREATE,
        STEP_WAIT_RUNNING("waiting for the new VM to boot", VM_STATE_STARTING), STEP_RECORD,
};
static const StepDef recreate_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK,
        STEP_STOP("stopping the old VM", VM_STATE_UPDATING), STEP_REMOVE("removing the old VM", VM_STATE_UPDATING),
        STEP_CREATE, STEP_WAIT_RUNNING("waiting for the new VM to boot", VM_STATE_STARTING), STEP_RECORD,
};
static const StepDef in_place_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK, STEP_UPDATE,
        STEP_STOP("stopping the VM to apply the update", VM_STATE_UPDATING),
        STEP_START("starting the updated VM", VM_STATE_STARTING), STEP_RECORD,
};
static const StepDef in_place_resume_steps[] = {
        STEP_STOP("stopping the VM to apply the update", VM_STATE_UPDATING),
        STEP_START("starting the updated VM", VM_STATE_STARTING), STEP_RECORD,
};
static const StepDef adopt_created_steps[] = {
        { .name = "adopt", .description = "adopting the VM created before an interruption",
          .start = adopt_created_start },
};

const StepTable table_create = STEP_TABLE_ON_FAIL("create", create_steps, table_deploy_failed);
const StepTable table_recreate = STEP_TABLE_ON_FAIL("recreate", recreate_steps, table_deploy_failed);
const StepTable table_in_place = STEP_TABLE_ON_FAIL("update-in-place", in_place_steps, table_deploy_failed);
const StepTable table_in_place_resume =
        STEP_TABLE_ON_FAIL("update-in-place", in_place_resume_steps, table_deploy_failed);
const StepTable table_adopt_created = STEP_TABLE("adopt-created", adopt_created_steps);
