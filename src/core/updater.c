/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <time.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "core/fileio.h"
#include "core/updater-internal.h"
#include "shared/log.h"
#include "shared/macro.h"

#define STATE_FILE "updater.json"
#define STATE_MAX (64u * 1024u)
#define FIRST_CHECK_USEC (2 * USEC_PER_SEC)     /* "within 10 s of start-up (or enabling)" */
#define BUSY_RETRY_USEC (5 * USEC_PER_SEC)

static const char *const state_names[_UPDATER_STATE_MAX] = {
        [UPDATER_STATE_DISABLED] = "disabled",
        [UPDATER_STATE_IDLE] = "idle",
        [UPDATER_STATE_CHECKING] = "checking",
        [UPDATER_STATE_DEFERRED] = "deferred",
        [UPDATER_STATE_APPLYING] = "applying",
        [UPDATER_STATE_VERIFYING] = "verifying",
        [UPDATER_STATE_ROLLING_BACK] = "rolling-back",
        [UPDATER_STATE_FAILED] = "failed",
};

const char *updater_state_to_string(UpdaterState s) {
        return s < _UPDATER_STATE_MAX ? state_names[s] : "failed";
}

uint64_t updater_now_realtime(void) {
        return (uint64_t) g_get_real_time();
}

static LauncherConfig *config(Updater *u) {
        return u->settings->config;
}

static bool enabled(Updater *u) {
        return !isempty(config(u)->updater_repository);
}

void updater_set_str(Updater *u, char **field, const char *value, UpdaterField bit) {
        if (streq_ptr(*field, strempty(value)))
                return;
        g_free(*field);
        *field = g_strdup(strempty(value));
        u->changed |= bit;
}

void updater_set_state(Updater *u, UpdaterState s) {
        if (u->st.state == s)
                return;
        log_debug("Updater: %s → %s.", updater_state_to_string(u->st.state), updater_state_to_string(s));
        u->st.state = s;
        u->changed |= UPDATER_FIELD_STATE;
}

void updater_flush(Updater *u) {
        uint32_t f = u->changed;
        u->changed = 0;
        if (f && u->events.changed)
                u->events.changed(u, f, u->events.userdata);
}

static void set_error(Updater *u, const char *message) {
        updater_set_str(u, &u->st.last_error, message, UPDATER_FIELD_LAST_ERROR);
}

/* ---- the state store: <state_dir>/updater.json ---- */

static const char *member_str(JsonObject *o, const char *k) {
        JsonNode *n = json_object_get_member(o, k);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return "";
        return json_node_get_string(n);
}

static uint64_t member_u64(JsonObject *o, const char *k) {
        JsonNode *n = json_object_get_member(o, k);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 || json_node_get_int(n) < 0)
                return 0;
        return (uint64_t) json_node_get_int(n);
}

static int load_state(Updater *u) {
        g_autofree char *data = NULL;
        size_t len;
        int r = read_file_limited(u->state_path, STATE_MAX, &data, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_warning_errno(r, "Cannot read %s: %m", u->state_path);
        g_autoptr(JsonParser) p = json_parser_new();
        JsonNode *root = NULL;
        if (!memchr(data, 0, len) && json_parser_load_from_data(p, data, (gssize) len, NULL))
                root = json_parser_get_root(p);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_autofree char *aside = g_strdup_printf("%s.corrupt", u->state_path);
                (void) rename(u->state_path, aside);
                log_warning("%s is corrupt; moved to %s, starting afresh.", u->state_path, aside);
                return 0;
        }
        JsonObject *o = json_node_get_object(root);
        updater_set_str(u, &u->st.last_good_commit, member_str(o, "last_good_commit"), UPDATER_FIELD_LAST_GOOD);
        updater_set_str(u, &u->st.previous_commit, member_str(o, "previous_commit"), UPDATER_FIELD_PREVIOUS);
        updater_set_str(u, &u->st.quarantined_commit, member_str(o, "quarantined_commit"), UPDATER_FIELD_QUARANTINED);
        updater_set_str(u, &u->st.target_commit, member_str(o, "target_commit"), UPDATER_FIELD_TARGET);
        u->st.last_check_usec = member_u64(o, "last_check_usec");
        u->st.last_update_usec = member_u64(o, "last_update_usec");
        JsonNode *t = json_object_get_member(o, "transaction");
        if (t && JSON_NODE_HOLDS_OBJECT(t)) {
                JsonObject *to = json_node_get_object(t);
                g_free(u->rec_kind);
                g_free(u->rec_from);
                g_free(u->rec_to);
                g_free(u->rec_phase);
                u->rec_kind = g_strdup(member_str(to, "kind"));
                u->rec_from = g_strdup(member_str(to, "from"));
                u->rec_to = g_strdup(member_str(to, "to"));
                u->rec_phase = g_strdup(member_str(to, "phase"));
        }
        return 0;
}

int updater_save_state(Updater *u) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "last_good_commit");
        json_builder_add_string_value(b, u->st.last_good_commit);
        json_builder_set_member_name(b, "previous_commit");
        json_builder_add_string_value(b, u->st.previous_commit);
        json_builder_set_member_name(b, "quarantined_commit");
        json_builder_add_string_value(b, u->st.quarantined_commit);
        json_builder_set_member_name(b, "target_commit");
        json_builder_add_string_value(b, u->st.target_commit);
        json_builder_set_member_name(b, "last_check_usec");
        json_builder_add_int_value(b, (gint64) u->st.last_check_usec);
        json_builder_set_member_name(b, "last_update_usec");
        json_builder_add_int_value(b, (gint64) u->st.last_update_usec);
        if (!isempty(u->rec_kind)) {
                json_builder_set_member_name(b, "transaction");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "kind");
                json_builder_add_string_value(b, u->rec_kind);
                json_builder_set_member_name(b, "from");
                json_builder_add_string_value(b, strempty(u->rec_from));
                json_builder_set_member_name(b, "to");
                json_builder_add_string_value(b, strempty(u->rec_to));
                json_builder_set_member_name(b, "phase");
                json_builder_add_string_value(b, strempty(u->rec_phase));
                json_builder_end_object(b);
        }
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, root);
        gsize len;
        g_autofree char *text = json_generator_to_data(gen, &len);
        int r = write_file_atomic(u->state_path, text, len, 0600);
        if (r < 0)
                log_warning_errno(r, "Cannot write %s: %m", u->state_path);
        return r;
}

int updater_record(Updater *u, const char *kind, const char *from, const char *to, const char *phase) {
        g_free(u->rec_kind);
        g_free(u->rec_from);
        g_free(u->rec_to);
        g_free(u->rec_phase);
        bool clear = isempty(phase);
        u->rec_kind = g_strdup(clear ? "" : kind);
        u->rec_from = g_strdup(clear ? "" : from);
        u->rec_to = g_strdup(clear ? "" : to);
        u->rec_phase = g_strdup(strempty(phase));
        return updater_save_state(u);
}

void updater_quarantine(Updater *u, const char *commit) {
        updater_set_str(u, &u->st.quarantined_commit, commit, UPDATER_FIELD_QUARANTINED);
        if (!isempty(commit))
                log_warning("Commit %s quarantined: it is not applied again until the branch moves.", commit);
        (void) updater_save_state(u);
}

void updater_report(Updater *u, const char *to, bool ok, const char *reason, bool rolled_back) {
        if (!u->events.finished)
                return;
        bool rollback = u->tx.kind == TX_ROLLBACK || (u->tx.kind == TX_RESUME && u->tx.origin == TX_ROLLBACK);
        uint64_t now = 0;
        (void) sd_event_now(u->event, CLOCK_MONOTONIC, &now);
        UpdaterTransaction t = {
                .action = rollback ? "rollback" : "apply",
                .automatic = u->tx.automatic,
                .resumed = u->tx.kind == TX_RESUME,
                .from = strempty(u->tx.from),
                .to = strempty(to),
                .ok = ok,
                .reason = reason,
                .rolled_back = rolled_back,
                .duration_usec = u->tx.start_usec > 0 && now > u->tx.start_usec ? now - u->tx.start_usec : 0,
        };
        u->events.finished(u, &t, u->events.userdata);
}

void defer_reason_free(gpointer p) {
        DeferReason *r = p;
        g_free(r->gate);
        g_free(r->detail);
        g_free(r->since);
        g_free(r);
}

/* ---- transactions ---- */

static void schedule_auto(Updater *u, uint64_t delay);

static void tx_reset(Updater *u) {
        updater_unlock(u);
        launcher_config_free(u->tx.cfg);
        step_user_free(u->tx.user);
        g_free(u->tx.from);
        g_free(u->tx.to);
        g_free(u->tx.requested);
        g_free(u->tx.fail_reason);
        u->tx = (Tx) { .lock_fd = -1 };
}

static void set_operation(Updater *u, const char *op, unsigned progress) {
        updater_set_str(u, &u->st.operation, op, UPDATER_FIELD_OPERATION);
        if (u->st.progress != progress) {
                u->st.progress = progress;
                u->changed |= UPDATER_FIELD_PROGRESS;
        }
}

static void on_progress(StepDriver *d, void *userdata) {
        Updater *u = userdata;
        set_operation(u, step_driver_step_name(d), step_driver_progress(d));
        updater_flush(u);
}

/* Ends the transaction: idle state, lock released, the caller answered. */
static void tx_finish(Updater *u, UpdaterState state, UpdaterError error, const char *message) {
        updater_done_cb done = u->tx.done;
        void *ud = u->tx.userdata;
        g_autofree char *from = g_strdup(strempty(u->tx.from));
        g_autofree char *to = g_strdup(isempty(u->tx.to) ? from : u->tx.to);
        bool available = u->tx.available;
        bool dry_run = u->tx.dry_run;
        UpdaterState prev_state = u->tx.prev_state;
        uint64_t spent = u->process_usec;

        if (!isempty(u->tx.to) && u->tx.kind == TX_CHECK)
                (void) updater_save_state(u);
        tx_reset(u);
        set_operation(u, "", 0);
        if (dry_run)
                state = prev_state; /* a question: State, DeferReasons and LastError stay */
        else if (state != UPDATER_STATE_DEFERRED && u->st.defer_reasons->len > 0) {
                g_ptr_array_set_size(u->st.defer_reasons, 0);
                u->changed |= UPDATER_FIELD_DEFER_REASONS;
        }
        updater_set_state(u, enabled(u) ? state : UPDATER_STATE_DISABLED);
        if (dry_run)
                ;
        else if (error == UPDATER_OK && state != UPDATER_STATE_DEFERRED)
                set_error(u, "");
        else if (error != UPDATER_OK && error != UPDATER_ERROR_DEFERRED && error != UPDATER_ERROR_BUSY)
                set_error(u, message);
        log_debug("Updater transaction ended; %llu µs in child processes and unit jobs.", (unsigned long long) spent);
        schedule_auto(u, 0); /* the next automatic check, or the retry of a failed rollback */
        updater_flush(u);
        if (done)
                done(u, error, message, from, to, available, ud);
}

static UpdaterError error_kind(int code) {
        switch (code) {
        case -EBUSY:
                return UPDATER_ERROR_BUSY;
        case -EAGAIN:
                return UPDATER_ERROR_DEFERRED;
        case -ENOTEMPTY:
                return UPDATER_ERROR_DIRTY_TREE;
        case -EINVAL:
                return UPDATER_ERROR_INVALID;
        default:
                return UPDATER_ERROR_FAILED;
        }
}

static bool tx_was_apply(Updater *u) {
        return u->tx.kind == TX_APPLY || (u->tx.kind == TX_RESUME && u->tx.origin == TX_APPLY);
}

/* The update table ran through: the target is the commit in force. */
static void tx_applied(Updater *u) {
        g_autofree char *old = g_strdup(u->tx.from);
        g_autofree char *new = g_strdup(u->tx.to);
        if (tx_was_apply(u))
                updater_set_str(u, &u->st.previous_commit, old, UPDATER_FIELD_PREVIOUS);
        else {
                /* The operator rolled back from old: it stays out until the branch moves. */
                updater_set_str(u, &u->st.quarantined_commit, old, UPDATER_FIELD_QUARANTINED);
                updater_set_str(u, &u->st.previous_commit, "", UPDATER_FIELD_PREVIOUS);
        }
        updater_set_str(u, &u->st.last_good_commit, new, UPDATER_FIELD_LAST_GOOD);
        updater_set_str(u, &u->st.current_commit, new, UPDATER_FIELD_CURRENT);
        u->st.last_update_usec = updater_now_realtime();
        u->changed |= UPDATER_FIELD_LAST_UPDATE;
        (void) updater_record(u, NULL, NULL, NULL, "");
        log_info("Updated %s from %s to %s.", config(u)->updater_repository, old, new);

        /* Properties first, then the signal, then the reply. */
        set_operation(u, "", 0);
        updater_set_state(u, UPDATER_STATE_IDLE);
        set_error(u, "");
        updater_flush(u);
        if (u->events.applied)
                u->events.applied(u, old, new, u->events.userdata);
        updater_report(u, new, true, NULL, false);
        tx_finish(u, UPDATER_STATE_IDLE, UPDATER_OK, NULL);
}

/* The update failed and the rollback ran through: back where it began. */
static void tx_rolled_back(Updater *u) {
        g_autofree char *target = g_strdup(u->tx.to);
        g_autofree char *prev = g_strdup(u->tx.from);
        g_autofree char *reason = g_strdup(strempty(u->tx.fail_reason));
        if (tx_was_apply(u))
                updater_set_str(u, &u->st.quarantined_commit, target, UPDATER_FIELD_QUARANTINED);
        updater_set_str(u, &u->st.current_commit, prev, UPDATER_FIELD_CURRENT);
        updater_set_str(u, &u->st.last_good_commit, prev, UPDATER_FIELD_LAST_GOOD);
        (void) updater_record(u, NULL, NULL, NULL, "");
        g_autofree char *msg = g_strdup_printf("update to %s failed: %s; rolled back to %s%s", target, reason, prev,
                                               tx_was_apply(u) ? " and quarantined the target" : "");
        log_warning("%s.", msg);
        set_error(u, msg);
        set_operation(u, "", 0);
        updater_set_state(u, UPDATER_STATE_IDLE);
        updater_flush(u);
        if (u->events.failed)
                u->events.failed(u, target, reason, true, u->events.userdata);
        updater_report(u, target, false, reason, true);
        tx_finish(u, UPDATER_STATE_IDLE, UPDATER_ERROR_FAILED, msg);
}

/* The rollback failed too. message: the driver's "<why the update failed>;
 * rollback failed too: <why>" for a compensation, the rollback's own reason
 * for a resumed one. */
static void tx_rollback_failed(Updater *u, const char *message) {
        g_autofree char *target = g_strdup(u->tx.to);
        g_autofree char *prev = g_strdup(u->tx.from);
        g_autofree char *reason = g_strdup(strempty(u->tx.fail_reason));
        g_autofree char *prefix = g_strdup_printf("%s; rollback failed too: ", reason);
        const char *why = g_str_has_prefix(message, prefix) ? message + strlen(prefix) : message;
        g_autofree char *msg = g_strdup_printf("%s; the rollback to %s failed too: %s", reason, prev, why);
        log_error("Update of %s: %s.", config(u)->updater_repository, msg);
        /* The record stays: the next tick (or start-up) converges on the last good commit again. */
        set_error(u, msg);
        set_operation(u, "", 0);
        updater_set_state(u, UPDATER_STATE_FAILED);
        updater_flush(u);
        if (u->events.failed)
                u->events.failed(u, target, msg, false, u->events.userdata);
        updater_report(u, target, false, msg, false);
        tx_finish(u, UPDATER_STATE_FAILED, UPDATER_ERROR_FAILED, msg);
}

/* A resumed transaction could not get the user or the lock. */
static void tx_resume_failed(Updater *u, int code, const char *message) {
        log_warning("Cannot finish the interrupted update yet: %s.", message);
        UpdaterState st = code == -EACCES ? UPDATER_STATE_FAILED : u->tx.prev_state;
        tx_reset(u);
        set_operation(u, "", 0);
        updater_set_state(u, enabled(u) ? st : UPDATER_STATE_DISABLED);
        schedule_auto(u, BUSY_RETRY_USEC);
        updater_flush(u);
}

/* The checks failed or deferred the update, or were all that was asked. */
static void tx_checked(Updater *u, int code, const char *message) {
        Tx *t = &u->tx;
        if (code == -EAGAIN && t->dry_run) {
                g_autofree char *msg = g_strdup_printf("update to %.12s would be deferred: %s", t->to, message);
                return tx_finish(u, t->prev_state, UPDATER_ERROR_DEFERRED, msg);
        }
        if (code == -EAGAIN) {
                g_autofree char *target = g_strdup(t->to);
                g_autofree char *reason = g_strdup_printf("deferred: %s", message);
                log_info("Update to %s %s.", target, reason);
                set_operation(u, "", 0);
                updater_set_state(u, UPDATER_STATE_DEFERRED);
                updater_flush(u);
                if (u->events.deferred)
                        u->events.deferred(u, message, target, u->events.userdata);
                g_autofree char *msg = g_strdup_printf("update to %.12s deferred: %s", target, message);
                return tx_finish(u, UPDATER_STATE_DEFERRED, UPDATER_ERROR_DEFERRED, msg);
        }
        if (code == -EACCES) /* UpdaterUser refused: ConfigError says it too */
                return tx_finish(u, UPDATER_STATE_FAILED, UPDATER_ERROR_FAILED, message);
        if (code < 0) {
                log_warning("Updater %s: %s.", t->kind == TX_CHECK ? "check" : t->kind == TX_ROLLBACK ? "rollback" : "update",
                            message);
                return tx_finish(u, UPDATER_STATE_IDLE, error_kind(code), message);
        }
        g_autofree char *msg = t->dry_run && !t->skip ? g_strdup_printf("would update from %s to %s", t->from, t->to)
                                                      : NULL;
        tx_finish(u, UPDATER_STATE_IDLE, UPDATER_OK, msg);
}

/* A transaction is one table: the checks, then the update with the rollback
 * as its compensation (updater-steps.c). Its end, here and nowhere else,
 * says how it went. */
static void on_tx_done(StepDriver *d, int code, const char *message, void *userdata) {
        Updater *u = userdata;
        const Tx *t = &u->tx;
        if (t->rolled_back)
                return tx_rolled_back(u);
        if (t->reverse)
                return tx_rollback_failed(u, message);
        if (t->forward && code == 0)
                return tx_applied(u);
        if (t->kind == TX_RESUME && code < 0)
                return tx_resume_failed(u, code, message);
        tx_checked(u, code, message);
}

static const StepDriverEvents tx_events = { .progress = on_progress, .done = on_tx_done };

static int tx_begin(Updater *u, TxKind kind, updater_done_cb done, void *userdata) {
        if (!enabled(u))
                return -ENOMEDIUM;
        if (step_driver_running(u->driver) || u->tx.kind != TX_NONE)
                return -EBUSY;
        if (updater_check_config(u) < 0) {
                updater_flush(u);
                return -EACCES;
        }
        UpdaterState prev = u->st.state;
        tx_reset(u);
        u->tx.kind = kind;
        u->tx.prev_state = prev;
        u->tx.cfg = launcher_config_copy(config(u));
        u->tx.done = done;
        u->tx.userdata = userdata;
        (void) sd_event_now(u->event, CLOCK_MONOTONIC, &u->tx.start_usec);
        u->process_usec = 0;
        u->auto_timer = sd_event_source_disable_unref(u->auto_timer);
        if (u->st.next_check_usec) {
                u->st.next_check_usec = 0;
                u->changed |= UPDATER_FIELD_NEXT_CHECK;
        }
        return 0;
}

static int tx_run(Updater *u, const StepTable *table, UpdaterState state) {
        updater_set_state(u, state);
        updater_flush(u);
        int r = step_driver_run(u->driver, table, &tx_events, u);
        if (r < 0)
                tx_reset(u);
        return r;
}

int updater_check(Updater *u, updater_done_cb done, void *userdata) {
        int r = tx_begin(u, TX_CHECK, done, userdata);
        if (r < 0)
                return r;
        return tx_run(u, &updater_check_table, UPDATER_STATE_CHECKING);
}

static int apply_internal(Updater *u, bool force, bool dry_run, bool automatic, updater_done_cb done, void *userdata) {
        int r = tx_begin(u, TX_APPLY, done, userdata);
        if (r < 0)
                return r;
        u->tx.force = force;
        u->tx.dry_run = dry_run;
        u->tx.automatic = automatic;
        return tx_run(u, &updater_apply_table, UPDATER_STATE_CHECKING);
}

int updater_apply(Updater *u, bool force, bool dry_run, updater_done_cb done, void *userdata) {
        return apply_internal(u, force, dry_run, false, done, userdata);
}

int updater_rollback(Updater *u, const char *commit, updater_done_cb done, void *userdata) {
        const char *target = isempty(commit) ? u->st.previous_commit : commit;
        if (step_driver_running(u->driver) || u->tx.kind != TX_NONE)
                return -EBUSY;
        if (isempty(target))
                return -ENOENT;
        int r = tx_begin(u, TX_ROLLBACK, done, userdata);
        if (r < 0)
                return r;
        u->tx.requested = g_strdup(target);
        return tx_run(u, &updater_rollback_table, UPDATER_STATE_APPLYING);
}

/* ---- a transaction left in the state store ---- */

static UpdaterState resume_state(Updater *u) {
        return streq(u->rec_phase, "reverse")  ? UPDATER_STATE_ROLLING_BACK
               : streq(u->rec_phase, "health") ? UPDATER_STATE_VERIFYING
                                               : UPDATER_STATE_APPLYING;
}

static int resume(Updater *u) {
        if (isempty(u->rec_kind) || !enabled(u))
                return 0;
        int r = tx_begin(u, TX_RESUME, NULL, NULL);
        if (r < 0)
                return r;
        u->tx.origin = streq(u->rec_kind, "rollback") ? TX_ROLLBACK : TX_APPLY;
        u->tx.from = g_strdup(u->rec_from);
        u->tx.to = g_strdup(u->rec_to);
        /* the user and the lock first; then the table the phase calls for */
        return tx_run(u, &updater_resume_table, resume_state(u));
}

/* ---- automatic checks ---- */

static void on_auto_done(Updater *u, UpdaterError error, const char *message, const char *from, const char *to,
                         bool available, void *userdata) {
        if (error != UPDATER_OK && error != UPDATER_ERROR_DEFERRED)
                log_warning("Automatic update check: %s.", strempty(message));
}

static int on_auto_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Updater *u = userdata;
        u->auto_timer = sd_event_source_disable_unref(u->auto_timer);
        u->st.next_check_usec = 0;
        u->changed |= UPDATER_FIELD_NEXT_CHECK;
        if (!enabled(u))
                return 0;
        int r = !isempty(u->rec_kind) ? resume(u) : 0;
        if (r >= 0 && isempty(u->rec_kind) && config(u)->updater_auto_update)
                r = apply_internal(u, false, false, true, on_auto_done, NULL);
        if (r == -EBUSY)
                schedule_auto(u, BUSY_RETRY_USEC);
        else if (r < 0)
                schedule_auto(u, 0); /* the settings cannot run: looked at again at the next interval */
        updater_flush(u);
        return 0;
}

/* delay 0 = the interval with ±10 % jitter. */
static void schedule_auto(Updater *u, uint64_t delay) {
        u->auto_timer = sd_event_source_disable_unref(u->auto_timer);
        bool want = enabled(u) && (config(u)->updater_auto_update || !isempty(u->rec_kind));
        if (!want) {
                if (u->st.next_check_usec) {
                        u->st.next_check_usec = 0;
                        u->changed |= UPDATER_FIELD_NEXT_CHECK;
                }
                return;
        }
        if (delay == 0) {
                uint64_t iv = config(u)->updater_interval_usec;
                uint64_t jitter = iv / 10;
                delay = iv - jitter + (jitter ? g_random_int_range(0, (gint32) MIN(2 * jitter, (uint64_t) G_MAXINT32)) : 0);
        }
        int r = sd_event_add_time_relative(u->event, &u->auto_timer, CLOCK_MONOTONIC, delay, 10 * USEC_PER_MSEC,
                                           on_auto_timer, u);
        if (r < 0) {
                log_warning_errno(r, "Cannot arm the update timer: %m");
                return;
        }
        u->st.next_check_usec = updater_now_realtime() + delay;
        u->changed |= UPDATER_FIELD_NEXT_CHECK;
}

int updater_set_auto_update(Updater *u, bool on, char **ret_error) {
        LauncherConfig *c = launcher_config_copy(config(u));
        c->updater_auto_update = on;
        /* The bus layer emits the change and calls updater_settings_changed(). */
        return settings_store_commit(u->settings, c, ret_error);
}

/* ---- HEAD outside transactions ---- */

static void on_head(StepRun *run, const StepResult *res, void *userdata) {
        Updater *u = userdata;
        u->head_proc = NULL;
        if (!step_result_ok(res) || u->tx.kind != TX_NONE)
                return;
        g_autofree char *id = g_strdup(strempty(res->data));
        g_strstrip(id);
        if (strlen(id) != 40 || strspn(id, "0123456789abcdef") != 40)
                return;
        updater_set_str(u, &u->st.current_commit, id, UPDATER_FIELD_CURRENT);
        if (isempty(u->st.last_good_commit) && isempty(u->rec_kind)) {
                updater_set_str(u, &u->st.last_good_commit, id, UPDATER_FIELD_LAST_GOOD);
                (void) updater_save_state(u);
        }
        updater_flush(u);
}

static void head_with_user(Updater *u, int code, StepUser *user, const char *why) {
        u->head_probe = NULL;
        if (code < 0) {
                if (code == -EPERM || code == -ESRCH)
                        updater_set_config_error(u, why);
                updater_flush(u);
                return;
        }
        char *args[] = { (char *) "rev-parse", (char *) "--verify", (char *) "HEAD^{commit}", NULL };
        (void) step_runner_git(u->runner, config(u)->updater_repository, user, "git rev-parse", args,
                               30 * USEC_PER_SEC, on_head, u, &u->head_proc);
        step_user_free(user); /* the back ends keep what they need */
}

static void read_head(Updater *u) {
        step_run_cancel(u->head_proc);
        u->head_proc = NULL;
        updater_user_probe_cancel(u->head_probe);
        u->head_probe = NULL;
        if (!enabled(u))
                return;
        StepUser *user = NULL;
        g_autofree char *why = NULL;
        int r = updater_resolve_user(u, config(u), &user, &why, head_with_user, &u->head_probe);
        if (r != -EINPROGRESS)
                head_with_user(u, r, user, why);
}

/* The unit this process runs in, from its cgroup ("" outside systemd). */
static char *own_unit(void) {
        g_autofree char *text = NULL;
        if (!g_file_get_contents("/proc/self/cgroup", &text, NULL, NULL))
                return g_strdup("");
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                const char *slash = strrchr(*l, '/');
                if (slash && g_str_has_suffix(slash, ".service"))
                        return g_strdup(slash + 1);
        }
        return g_strdup("");
}

void updater_settings_changed(Updater *u) {
        LauncherConfig *c = config(u);
        bool schedule_changed = !streq_ptr(u->armed_repository, c->updater_repository) ||
                                u->armed_auto != c->updater_auto_update ||
                                u->armed_interval != c->updater_interval_usec;
        if (u->tx.kind == TX_NONE && enabled(u))
                (void) updater_check_config(u);
        if (u->tx.kind == TX_NONE) {
                UpdaterState want = !enabled(u)                                ? UPDATER_STATE_DISABLED
                                    : u->st.state == UPDATER_STATE_DISABLED ? UPDATER_STATE_IDLE
                                                                            : u->st.state;
                updater_set_state(u, want);
                if (!streq_ptr(u->armed_repository, c->updater_repository) ||
                    !streq_ptr(u->armed_user, c->updater_user))
                        read_head(u);
                if (schedule_changed) {
                        bool turned_on = c->updater_auto_update && (!u->armed_auto ||
                                                                    !streq_ptr(u->armed_repository, c->updater_repository));
                        /* the first check within 10 s of enabling; an interval change re-arms from now */
                        schedule_auto(u, turned_on ? FIRST_CHECK_USEC : 0);
                }
        }
        g_free(u->armed_repository);
        u->armed_repository = g_strdup(c->updater_repository);
        g_free(u->armed_user);
        u->armed_user = g_strdup(c->updater_user);
        u->armed_auto = c->updater_auto_update;
        u->armed_interval = c->updater_interval_usec;
        updater_flush(u);
}

int updater_start(Updater *u) {
        (void) load_state(u);
        /* A SIGHUP or SetSettings handled before the bus name's reply (which
         * starts us) ran updater_settings_changed() first. */
        g_free(u->armed_repository);
        u->armed_repository = g_strdup(config(u)->updater_repository);
        g_free(u->armed_user);
        u->armed_user = g_strdup(config(u)->updater_user);
        u->armed_auto = config(u)->updater_auto_update;
        u->armed_interval = config(u)->updater_interval_usec;
        u->st.state = enabled(u) ? UPDATER_STATE_IDLE : UPDATER_STATE_DISABLED;
        (void) updater_check_config(u);
        read_head(u);
        if (!isempty(u->rec_kind) && enabled(u))
                schedule_auto(u, 1); /* finish it from the loop, at once */
        else
                schedule_auto(u, FIRST_CHECK_USEC);
        u->changed = 0;
        return 0;
}

const UpdaterStatus *updater_status(Updater *u) {
        return &u->st;
}

int updater_new(sd_event *event, sd_bus *bus, SettingsStore *settings, const char *state_dir, Reconciler *reconciler,
                StepRunnerBackend runner, const UpdaterEvents *events, Updater **ret) {
        Updater *u = g_new0(Updater, 1);
        u->event = sd_event_ref(event);
        u->bus = bus ? sd_bus_ref(bus) : NULL;
        u->settings = settings;
        u->state_dir = g_strdup(state_dir);
        u->state_path = g_build_filename(state_dir, STATE_FILE, NULL);
        u->reconciler = reconciler;
        if (events)
                u->events = *events;
        u->tx.lock_fd = -1;
        u->own_unit = own_unit();
        u->st.current_commit = g_strdup("");
        u->st.target_commit = g_strdup("");
        u->st.last_good_commit = g_strdup("");
        u->st.previous_commit = g_strdup("");
        u->st.quarantined_commit = g_strdup("");
        u->st.operation = g_strdup("");
        u->st.last_error = g_strdup("");
        u->st.config_error = g_strdup("");
        u->st.defer_reasons = g_ptr_array_new_with_free_func(defer_reason_free);
        u->rec_kind = g_strdup("");
        u->runner_backend = runner;
        int r = step_driver_new(event, &u->driver);
        if (r >= 0)
                r = gates_new(event, &u->gates);
        if (r >= 0)
                r = step_runner_new(event, bus, runner, &u->runner);
        if (r < 0) {
                updater_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

void updater_free(Updater *u) {
        if (!u)
                return;
        step_driver_free(u->driver);
        if (u->tx.done) {
                /* Stopping mid-transaction: the record stays and the next start finishes it. */
                updater_done_cb done = TAKE_PTR(u->tx.done);
                done(u, UPDATER_ERROR_FAILED,
                     "the launcher is stopping; the transaction is finished when it starts again",
                     strempty(u->tx.from), strempty(u->tx.from), false, u->tx.userdata);
        }
        updater_steps_cancel_all(u);
        step_run_cancel(u->proc);
        step_run_cancel(u->head_proc);
        updater_user_probe_cancel(u->head_probe);
        tx_reset(u);
        gates_free(u->gates);
        g_free(u->health_last_why);
        g_free(u->spawn_why);
        systemd_client_free(u->systemd);
        step_runner_free(u->runner);
        if (u->http)
                http_context_free(u->http);
        sd_event_source_disable_unref(u->auto_timer);
        sd_bus_unref(u->bus);
        sd_event_unref(u->event);
        g_free(u->state_dir);
        g_free(u->state_path);
        g_free(u->own_unit);
        g_free(u->armed_repository);
        g_free(u->armed_user);
        g_free(u->rec_kind);
        g_free(u->rec_from);
        g_free(u->rec_to);
        g_free(u->rec_phase);
        g_free(u->st.current_commit);
        g_free(u->st.target_commit);
        g_free(u->st.last_good_commit);
        g_free(u->st.previous_commit);
        g_free(u->st.quarantined_commit);
        g_free(u->st.operation);
        g_free(u->st.last_error);
        g_free(u->st.config_error);
        g_ptr_array_unref(u->st.defer_reasons);
        g_free(u);
}
