/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "core/fileio.h"
#include "core/safe-dir.h"
#include "core/updater.h"
#include "daemon/metrics.h"
#include "shared/log.h"
#include "shared/macro.h"

struct Metrics {
        sd_event *event;
        SettingsStore *settings;
        Reconciler *reconciler;
        ReconcilerEvents inner;   /* forwarded to */
        ReconcilerEvents events;  /* given to the reconciler */
        sd_event_source *timer;
        uint64_t last_write;      /* CLOCK_MONOTONIC */
        char *last_path;          /* the file last written, removed when the path changes */
        char *last_text;          /* what it holds */
        char *last_error;         /* the path that last failed, logged once */
        GHashTable *vm_errors;    /* VM name → its LastError as last seen, to count each new one */
        uint64_t deploys, deploy_failures;
        uint64_t errors[_METRICS_ERROR_MAX];
        metrics_section_fn updater_section;
        void *updater_userdata;
};

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Prometheus label values: backslash, double quote and newline escaped. */
static void append_label(GString *s, const char *v) {
        for (const char *p = v; *p; p++)
                if (*p == '\\' || *p == '"')
                        g_string_append_printf(s, "\\%c", *p);
                else if (*p == '\n')
                        g_string_append(s, "\\n");
                else
                        g_string_append_c(s, *p);
}

static void header(GString *s, const char *name, const char *type, const char *help) {
        g_string_append_printf(s, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void vm_sample(GString *s, const char *name, const Vm *vm, const char *extra_label, const char *extra_value,
                      const char *value) {
        g_string_append_printf(s, "%s{vm=\"", name);
        append_label(s, vm->name);
        if (extra_label) {
                g_string_append_printf(s, "\",%s=\"", extra_label);
                append_label(s, extra_value);
        }
        g_string_append_printf(s, "\"} %s\n", value);
}

static void vm_uint(GString *s, const char *name, const Vm *vm, uint64_t v) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, v);
        vm_sample(s, name, vm, NULL, NULL, buf);
}

static void vm_seconds(GString *s, const char *name, const Vm *vm, uint64_t usec) {
        char buf[48];
        snprintf(buf, sizeof buf, "%" PRIu64 ".%06" PRIu64, (uint64_t) (usec / USEC_PER_SEC),
                 (uint64_t) (usec % USEC_PER_SEC));
        vm_sample(s, name, vm, NULL, NULL, buf);
}

typedef enum VmMetric {
        VM_METRIC_STATE,
        VM_METRIC_RESTARTS,
        VM_METRIC_UPDATES,
        VM_METRIC_LAST_CHECK,
        VM_METRIC_LAST_CHECK_AGE,
        VM_METRIC_LAST_SUCCESSFUL_CHECK,
        VM_METRIC_LAST_SUCCESSFUL_CHECK_AGE,
        VM_METRIC_VMM_UNREACHABLE,
        VM_METRIC_LAST_UPDATE,
        VM_METRIC_LAST_UPDATE_AGE,
        VM_METRIC_BLOCKED,
        VM_METRIC_LAST_ERROR,
        _VM_METRIC_MAX,
} VmMetric;

static const struct {
        const char *name, *type, *help;
} vm_metrics[_VM_METRIC_MAX] = {
        [VM_METRIC_STATE] = { "platform_launcher_vm_state", "gauge", "1 for the VM's current state, 0 for the others." },
        [VM_METRIC_RESTARTS] = { "platform_launcher_vm_restarts_total", "counter",
                                 "Times the launcher started the VM again after it exited (RestartCount)." },
        [VM_METRIC_UPDATES] = { "platform_launcher_vm_updates_total", "counter",
                                "Deploys of a new spec to the VM (UpdateCount)." },
        [VM_METRIC_LAST_CHECK] = { "platform_launcher_vm_last_check_timestamp_seconds", "gauge",
                                   "When the last check of the VM ended, successful or not (0 = never)." },
        [VM_METRIC_LAST_CHECK_AGE] = { "platform_launcher_vm_last_check_age_seconds", "gauge",
                                       "Seconds since the last check of the VM ended (absent = never)." },
        [VM_METRIC_LAST_SUCCESSFUL_CHECK] = { "platform_launcher_vm_last_successful_check_timestamp_seconds", "gauge",
                                              "When the Platform API and the VMM last both answered a check "
                                              "(0 = not since the launcher started)." },
        [VM_METRIC_LAST_SUCCESSFUL_CHECK_AGE] = { "platform_launcher_vm_last_successful_check_age_seconds", "gauge",
                                                  "Seconds since the last successful check (absent = none since "
                                                  "the launcher started)." },
        [VM_METRIC_VMM_UNREACHABLE] = { "platform_launcher_vm_vmm_unreachable", "gauge",
                                        "1 while the VMM has not answered for longer than a poll interval "
                                        "(VmmStatus unreachable)." },
        [VM_METRIC_LAST_UPDATE] = { "platform_launcher_vm_last_update_timestamp_seconds", "gauge",
                                    "When the VM was last updated (0 = never)." },
        [VM_METRIC_LAST_UPDATE_AGE] = { "platform_launcher_vm_last_update_age_seconds", "gauge",
                                        "Seconds since the VM was last updated (absent = never)." },
        [VM_METRIC_BLOCKED] = { "platform_launcher_vm_blocked", "gauge",
                                "1 while the spec cannot be applied (missing env, invalid spec)." },
        [VM_METRIC_LAST_ERROR] = { "platform_launcher_vm_last_error", "gauge", "1 while the VM has a LastError." },
};

static void render_vm_metric(GString *s, VmMetric k, Vm *const *vms, uint64_t now) {
        header(s, vm_metrics[k].name, vm_metrics[k].type, vm_metrics[k].help);
        for (Vm *const *p = vms; p && *p; p++) {
                const Vm *vm = *p;
                switch (k) {
                case VM_METRIC_STATE:
                        for (VmState st = VM_STATE_FIRST; st < _VM_STATE_MAX; st++)
                                vm_sample(s, vm_metrics[k].name, vm, "state", vm_state_to_string(st),
                                          st == vm->state ? "1" : "0");
                        break;
                case VM_METRIC_RESTARTS:
                        vm_uint(s, vm_metrics[k].name, vm, vm->restart_count);
                        break;
                case VM_METRIC_UPDATES:
                        vm_uint(s, vm_metrics[k].name, vm, vm->update_count);
                        break;
                case VM_METRIC_LAST_CHECK:
                        vm_seconds(s, vm_metrics[k].name, vm, vm->last_check_usec);
                        break;
                case VM_METRIC_LAST_CHECK_AGE:
                        if (vm->last_check_usec)
                                vm_seconds(s, vm_metrics[k].name, vm,
                                           now > vm->last_check_usec ? now - vm->last_check_usec : 0);
                        break;
                case VM_METRIC_LAST_SUCCESSFUL_CHECK:
                        vm_seconds(s, vm_metrics[k].name, vm, vm->last_successful_check_usec);
                        break;
                case VM_METRIC_LAST_SUCCESSFUL_CHECK_AGE:
                        if (vm->last_successful_check_usec)
                                vm_seconds(s, vm_metrics[k].name, vm,
                                           now > vm->last_successful_check_usec ? now - vm->last_successful_check_usec
                                                                                : 0);
                        break;
                case VM_METRIC_VMM_UNREACHABLE:
                        vm_uint(s, vm_metrics[k].name, vm, streq(vm->vmm_status, "unreachable"));
                        break;
                case VM_METRIC_LAST_UPDATE:
                        vm_seconds(s, vm_metrics[k].name, vm, vm->last_update_usec);
                        break;
                case VM_METRIC_LAST_UPDATE_AGE:
                        if (vm->last_update_usec)
                                vm_seconds(s, vm_metrics[k].name, vm,
                                           now > vm->last_update_usec ? now - vm->last_update_usec : 0);
                        break;
                case VM_METRIC_BLOCKED:
                        vm_uint(s, vm_metrics[k].name, vm, vm->state == VM_STATE_BLOCKED);
                        break;
                case VM_METRIC_LAST_ERROR:
                        vm_uint(s, vm_metrics[k].name, vm, !isempty(vm->last_error));
                        break;
                default:
                        break;
                }
        }
}

/* ---- resources: one gauge per figure, from the Vm's and the HostView's fields ---- */

typedef enum FigureKind { FIG_U32, FIG_U64, FIG_USEC, FIG_LOAD1, FIG_LOAD5, FIG_LOAD15 } FigureKind;

typedef struct Figure {
        const char *name, *help;
        size_t offset;
        FigureKind kind;
        uint64_t scale;         /* to base units: MiB, GiB to bytes */
        bool guest;             /* only while the guest agent answers (ResourcesTimestamp) */
} Figure;

#define VM_FIG(n, h, f, k, sc, g) { n, h, offsetof(Vm, f), k, sc, g }
static const Figure vm_figures[] = {
        VM_FIG("platform_launcher_vm_vcpu", "vCPUs the VM is configured with.", vcpu, FIG_U32, 1, false),
        VM_FIG("platform_launcher_vm_memory_bytes", "Memory the VM is configured with.", memory_mib, FIG_U32,
               1024 * 1024, false),
        VM_FIG("platform_launcher_vm_disk_bytes", "Disk the VM is configured with.", disk_gib, FIG_U32,
               1024 * 1024 * 1024, false),
        VM_FIG("platform_launcher_vm_guest_memory_total_bytes", "The guest's memory (its agent's SysInfo).",
               guest_memory_total_bytes, FIG_U64, 1, true),
        VM_FIG("platform_launcher_vm_guest_memory_available_bytes", "The guest's available memory.",
               guest_memory_available_bytes, FIG_U64, 1, true),
        VM_FIG("platform_launcher_vm_guest_disk_total_bytes", "The guest's data disks.", guest_disk_total_bytes,
               FIG_U64, 1, true),
        VM_FIG("platform_launcher_vm_guest_disk_free_bytes", "Free space on the guest's data disks.",
               guest_disk_free_bytes, FIG_U64, 1, true),
        VM_FIG("platform_launcher_vm_guest_uptime_seconds", "The guest's uptime.", guest_uptime_usec, FIG_USEC, 1,
               true),
        VM_FIG("platform_launcher_vm_guest_load1", "The guest's load average over 1 minute.", guest_load_average,
               FIG_LOAD1, 1, true),
        VM_FIG("platform_launcher_vm_guest_load5", "The guest's load average over 5 minutes.", guest_load_average,
               FIG_LOAD5, 1, true),
        VM_FIG("platform_launcher_vm_guest_load15", "The guest's load average over 15 minutes.", guest_load_average,
               FIG_LOAD15, 1, true),
};

#define HOST_FIG(n, h, f, k, sc) { n, h, offsetof(HostView, f), k, sc, false }
static const Figure host_figures[] = {
        HOST_FIG("platform_launcher_host_capacity_vcpu", "vCPUs the VMs may take (CapacityVcpu, or the online CPUs).",
                 capacity_vcpu, FIG_U32, 1),
        HOST_FIG("platform_launcher_host_allocated_vcpu", "vCPUs of the VMs the VMM lists as started.", allocated_vcpu,
                 FIG_U32, 1),
        HOST_FIG("platform_launcher_host_capacity_memory_bytes", "Memory the VMs may take.", capacity_memory_mib,
                 FIG_U64, 1024 * 1024),
        HOST_FIG("platform_launcher_host_allocated_memory_bytes", "Memory of the started VMs.", allocated_memory_mib,
                 FIG_U64, 1024 * 1024),
        HOST_FIG("platform_launcher_host_capacity_disk_bytes", "Disk the VMs may take (0: not checked).",
                 capacity_disk_gib, FIG_U64, 1024 * 1024 * 1024),
        HOST_FIG("platform_launcher_host_allocated_disk_bytes", "Disk of the started VMs.", allocated_disk_gib,
                 FIG_U64, 1024 * 1024 * 1024),
        HOST_FIG("platform_launcher_host_started_vms", "VMs the VMM lists as started, managed or not.", started_vms,
                 FIG_U32, 1),
        HOST_FIG("platform_launcher_host_managed_vms", "VMs the launcher manages.", managed_vms, FIG_U32, 1),
        HOST_FIG("platform_launcher_host_max_vms", "The VMM's CID pool (GetMeta max_cvm_number; 0 = unknown).",
                 max_vms, FIG_U32, 1),
        HOST_FIG("platform_launcher_host_memory_available_bytes", "The host's available memory (MemAvailable).",
                 memory_available_mib, FIG_U64, 1024 * 1024),
        HOST_FIG("platform_launcher_host_load1", "The host's load average over 1 minute.", load_average, FIG_LOAD1, 1),
};

static char *figure_value(const Figure *f, const void *object) {
        const uint8_t *p = (const uint8_t *) object + f->offset;
        switch (f->kind) {
        case FIG_U32:
                return g_strdup_printf("%" PRIu64, (uint64_t) *(const uint32_t *) p * f->scale);
        case FIG_U64:
                return g_strdup_printf("%" PRIu64, *(const uint64_t *) p * f->scale);
        case FIG_USEC:
                return g_strdup_printf("%" PRIu64 ".%06" PRIu64, (uint64_t) (*(const uint64_t *) p / USEC_PER_SEC),
                                       (uint64_t) (*(const uint64_t *) p % USEC_PER_SEC));
        default:
                return g_strdup_printf("%.2f", ((const double *) p)[f->kind - FIG_LOAD1]);
        }
}

static void render_figures(GString *s, Vm *const *vms, const HostView *host) {
        for (size_t i = 0; i < ELEMENTSOF(vm_figures); i++) {
                const Figure *f = &vm_figures[i];
                header(s, f->name, "gauge", f->help);
                for (Vm *const *p = vms; p && *p; p++) {
                        if (f->guest && !(*p)->resources_timestamp)
                                continue;
                        g_autofree char *v = figure_value(f, *p);
                        vm_sample(s, f->name, *p, NULL, NULL, v);
                }
        }
        for (size_t i = 0; host && i < ELEMENTSOF(host_figures); i++) {
                const Figure *f = &host_figures[i];
                g_autofree char *v = figure_value(f, host);
                header(s, f->name, "gauge", f->help);
                g_string_append_printf(s, "%s %s\n", f->name, v);
        }
}

static void gauge_seconds(GString *s, const char *name, const char *help, uint64_t usec) {
        header(s, name, "gauge", help);
        g_string_append_printf(s, "%s %" PRIu64 ".%06" PRIu64 "\n", name, (uint64_t) (usec / USEC_PER_SEC),
                               (uint64_t) (usec % USEC_PER_SEC));
}

static void gauge_uint(GString *s, const char *name, const char *help, uint64_t v) {
        header(s, name, "gauge", help);
        g_string_append_printf(s, "%s %" PRIu64 "\n", name, v);
}

void metrics_updater_section(GString *s, void *userdata) {
        const UpdaterStatus *u = updater_status(userdata);
        const char *state = "platform_launcher_updater_state";
        header(s, state, "gauge", "1 for the Updater's current state, 0 for the others.");
        for (UpdaterState st = 0; st < _UPDATER_STATE_MAX; st++) {
                g_string_append_printf(s, "%s{state=\"", state);
                append_label(s, updater_state_to_string(st));
                g_string_append_printf(s, "\"} %d\n", st == u->state);
        }
        if (!isempty(u->current_commit)) {
                const char *info = "platform_launcher_updater_commit_info";
                header(s, info, "gauge", "1, labelled with the commit the deployment runs (CurrentCommit).");
                g_string_append_printf(s, "%s{commit=\"", info);
                append_label(s, u->current_commit);
                g_string_append(s, "\"} 1\n");
        }
        gauge_uint(s, "platform_launcher_updater_update_available",
                   "1 while the last fetched branch head differs from the deployed commit.",
                   !isempty(u->target_commit) && !streq(u->target_commit, u->current_commit));
        gauge_uint(s, "platform_launcher_updater_quarantined", "1 while a commit is quarantined (QuarantinedCommit).",
                   !isempty(u->quarantined_commit));
        gauge_uint(s, "platform_launcher_updater_last_error", "1 while the Updater has a LastError.",
                   !isempty(u->last_error));
        gauge_seconds(s, "platform_launcher_updater_last_check_timestamp_seconds",
                      "When the Updater last fetched the branch (0 = never).", u->last_check_usec);
        gauge_seconds(s, "platform_launcher_updater_last_update_timestamp_seconds",
                      "When the Updater last changed the deployment (0 = never).", u->last_update_usec);
        gauge_seconds(s, "platform_launcher_updater_next_check_timestamp_seconds",
                      "When the next automatic check is due (0 = none: AutoUpdate off or disabled).",
                      u->next_check_usec);
}

static void counter(GString *s, const char *name, const char *help, uint64_t v) {
        header(s, name, "counter", help);
        g_string_append_printf(s, "%s %" PRIu64 "\n", name, v);
}

char *metrics_render(Metrics *mt, uint64_t now) {
        GString *s = g_string_new(NULL);
        Vm *const *vms = mt->reconciler ? reconciler_vms(mt->reconciler) : NULL;
        for (VmMetric k = 0; k < _VM_METRIC_MAX; k++)
                render_vm_metric(s, k, vms, now);
        render_figures(s, vms, mt->reconciler ? reconciler_host_view(mt->reconciler) : NULL);
        counter(s, "platform_launcher_deploys_total", "Successful VM deploys (VmUpdated) since the launcher started.",
                mt->deploys);
        counter(s, "platform_launcher_deploy_failures_total",
                "Failed VM deploys (UpdateFailed) since the launcher started.", mt->deploy_failures);
        counter(s, "platform_launcher_api_errors_total",
                "Platform API errors since the launcher started (each new LastError naming the API).",
                mt->errors[METRICS_ERROR_API]);
        counter(s, "platform_launcher_vmm_errors_total",
                "VMM errors since the launcher started (each new LastError naming the VMM).",
                mt->errors[METRICS_ERROR_VMM]);
        if (mt->updater_section)
                mt->updater_section(s, mt->updater_userdata);
        return g_string_free(s, FALSE);
}

char *metrics_path_check(const char *path) {
        if (isempty(path))
                return NULL;
        g_autofree char *dir = g_path_get_dirname(path);
        return safe_dir_check(dir);
}

/* Writes the file, or removes it (text NULL), in its directory as opened by
 * safe_dir_open: nobody else can have swapped a component of the path. */
static int metrics_file_apply(const char *path, const char *text, char **ret_why) {
        g_autofree char *dir = g_path_get_dirname(path), *base = g_path_get_basename(path);
        _cleanup_close_ int dfd = safe_dir_open(dir, text != NULL, ret_why);
        if (dfd < 0)
                return dfd;
        if (!text)
                return unlinkat(dfd, base, 0) < 0 && errno != ENOENT ? -errno : 0;
        return safe_write_at(dfd, base, text, strlen(text), 0644);
}

static void metrics_write(Metrics *mt) {
        const char *path = mt->settings->config->metrics_path;
        g_autofree char *why = NULL;
        int r;

        if (!streq_ptr(path, mt->last_path)) {
                /* A path given up: its stale numbers must not be collected any more. */
                if (!isempty(mt->last_path) && (r = metrics_file_apply(mt->last_path, NULL, &why)) < 0 && r != -ENOENT)
                        log_warning_errno(r, "Cannot remove the old metrics file %s: %s", mt->last_path,
                                          why ?: strerror(-r));
                g_clear_pointer(&why, g_free);
                g_free(mt->last_path);
                mt->last_path = g_strdup(path);
                g_clear_pointer(&mt->last_text, g_free);
        }
        mt->last_write = now_usec(CLOCK_MONOTONIC);
        if (isempty(path))
                return;

        g_autofree char *text = metrics_render(mt, now_usec(CLOCK_REALTIME));
        if (streq_ptr(text, mt->last_text))
                return;
        r = metrics_file_apply(path, text, &why);
        if (r < 0) {
                if (!streq_ptr(mt->last_error, path)) {
                        if (why)
                                log_warning("Not writing the metrics file %s: %s.", path, why);
                        else
                                log_warning_errno(r, "Cannot write the metrics file %s: %m", path);
                }
                g_free(mt->last_error);
                mt->last_error = g_strdup(path);
                return;
        }
        g_clear_pointer(&mt->last_error, g_free);
        g_free(mt->last_text);
        mt->last_text = g_steal_pointer(&text);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Metrics *mt = userdata;
        metrics_write(mt);
        int r = sd_event_source_set_time(s, now_usec(CLOCK_MONOTONIC) + METRICS_REFRESH_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return r;
}

/* Something changed: write soon, but not more often than every few seconds. */
static void metrics_changed(Metrics *mt) {
        if (!mt->timer)
                return;
        uint64_t at = MAX(now_usec(CLOCK_MONOTONIC), mt->last_write + METRICS_MIN_INTERVAL_USEC);
        uint64_t next = 0;
        if (sd_event_source_get_time(mt->timer, &next) >= 0 && next <= at)
                return;
        (void) sd_event_source_set_time(mt->timer, at);
        (void) sd_event_source_set_enabled(mt->timer, SD_EVENT_ONESHOT);
}

void metrics_count_error(Metrics *mt, MetricsError kind) {
        if (kind < 0 || kind >= _METRICS_ERROR_MAX)
                return;
        mt->errors[kind]++;
        metrics_changed(mt);
}

void metrics_set_updater_section(Metrics *mt, metrics_section_fn fn, void *userdata) {
        mt->updater_section = fn;
        mt->updater_userdata = userdata;
        metrics_changed(mt);
}

/* ---- the reconciler's events: counted, then forwarded ---- */

static void on_vm_added(Vm *vm, void *userdata) {
        Metrics *mt = userdata;
        metrics_changed(mt);
        if (mt->inner.vm_added)
                mt->inner.vm_added(vm, mt->inner.userdata);
}

static void on_vm_removed(Vm *vm, void *userdata) {
        Metrics *mt = userdata;
        metrics_changed(mt);
        if (mt->inner.vm_removed)
                mt->inner.vm_removed(vm, mt->inner.userdata);
}

static void on_vm_changed(Vm *vm, void *userdata) {
        Metrics *mt = userdata;
        const char *seen = g_hash_table_lookup(mt->vm_errors, vm->name);
        if (!streq(strempty(seen), vm->last_error)) {
                g_hash_table_replace(mt->vm_errors, g_strdup(vm->name), g_strdup(vm->last_error));
                /* The reconciler's own words (source.c, observe.c): "Platform API unreachable: ...",
                 * "VMM unreachable: ..."; other VMM failures name the VMM call. */
                if (g_str_has_prefix(vm->last_error, "Platform API"))
                        mt->errors[METRICS_ERROR_API]++;
                else if (g_str_has_prefix(vm->last_error, "VMM") || strstr(vm->last_error, "Vm failed"))
                        mt->errors[METRICS_ERROR_VMM]++;
        }
        metrics_changed(mt);
        if (mt->inner.vm_changed)
                mt->inner.vm_changed(vm, mt->inner.userdata);
}

static void on_vm_updated(Vm *vm, const char *old_hash, const char *new_hash, const char *vm_id,
                          void *userdata) {
        Metrics *mt = userdata;
        mt->deploys++;
        metrics_changed(mt);
        if (mt->inner.vm_updated)
                mt->inner.vm_updated(vm, old_hash, new_hash, vm_id, mt->inner.userdata);
}

static void on_update_failed(Vm *vm, const char *target, const char *reason, void *userdata) {
        Metrics *mt = userdata;
        mt->deploy_failures++;
        metrics_changed(mt);
        if (mt->inner.update_failed)
                mt->inner.update_failed(vm, target, reason, mt->inner.userdata);
}

static void on_host_changed(void *userdata) {
        Metrics *mt = userdata;
        metrics_changed(mt);
        if (mt->inner.host_changed)
                mt->inner.host_changed(mt->inner.userdata);
}

static void on_required_env_changed(void *userdata) {
        Metrics *mt = userdata;
        if (mt->inner.required_env_changed)
                mt->inner.required_env_changed(mt->inner.userdata);
}

int metrics_new(sd_event *event, SettingsStore *settings, const ReconcilerEvents *inner, Metrics **ret) {
        Metrics *mt = g_new0(Metrics, 1);
        mt->event = sd_event_ref(event);
        mt->settings = settings;
        mt->inner = *inner;
        mt->vm_errors = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        mt->events = (ReconcilerEvents) {
                .vm_added = on_vm_added,
                .vm_removed = on_vm_removed,
                .vm_changed = on_vm_changed,
                .vm_updated = on_vm_updated,
                .update_failed = on_update_failed,
                .required_env_changed = on_required_env_changed,
                .host_changed = on_host_changed,
                .userdata = mt,
        };
        *ret = mt;
        return 0;
}

const ReconcilerEvents *metrics_events(Metrics *mt) {
        return &mt->events;
}

int metrics_start(Metrics *mt, Reconciler *r) {
        mt->reconciler = r;
        return sd_event_add_time(mt->event, &mt->timer, CLOCK_MONOTONIC, now_usec(CLOCK_MONOTONIC), 10 * 1000,
                                 on_timer, mt);
}

void metrics_free(Metrics *mt) {
        if (!mt)
                return;
        sd_event_source_disable_unref(mt->timer);
        sd_event_unref(mt->event);
        g_free(mt->last_path);
        g_free(mt->last_text);
        g_free(mt->last_error);
        g_hash_table_unref(mt->vm_errors);
        g_free(mt);
}
