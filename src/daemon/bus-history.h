/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "core/history.h"
#include "core/reconciler.h"
#include "core/updater.h"

/* The audit history on the bus: entries from the reconciler's events (a
 * deploy, automatic or asked for, and its failure), from the completion of
 * the operator's Vm methods (who asked, from the sender's credentials) and
 * from the Updater's transactions; Vm.GetHistory, Updater.GetHistory and
 * their HistoryAdded signals. */

typedef struct Manager Manager;
typedef struct BusHistory BusHistory;
typedef struct VmOp VmOp;

/* Loads <state_dir>/history.json. */
int bus_history_new(Manager *m, BusHistory **ret);
void bus_history_free(BusHistory *bh);

/* The history itself, for other parts of the daemon (the Updater's
 * transactions): history_append(bus_history_get(m->history), &entry). */
History *bus_history_get(BusHistory *bh);
/* history_append, logging a write failure. */
int bus_history_append(BusHistory *bh, const HistoryEntry *e);

/* An operator operation: started (the caller's credentials are read now),
 * then done (records how it ended unless a deploy entry already did, and
 * frees), or freed if it never started. */
VmOp *bus_history_op_new(Manager *m, sd_bus_message *msg, const Vm *vm, const char *action);
void bus_history_op_done(VmOp *op, bool ok, const char *message);
sd_bus_message *bus_history_op_msg(VmOp *op);
const char *bus_history_op_action(const VmOp *op);
/* For a Busy reply: the operator's call on vm that is running or waiting
 * (the oldest besides except), "the stop asked by uid 0 (platformctl) 3 s
 * ago"; NULL when there is none. Caller frees. */
char *bus_history_op_describe(BusHistory *bh, const Vm *vm, const VmOp *except);
void bus_history_op_free(VmOp *op);

/* From the ReconcilerEvents handlers in bus-vm.c; bh may be NULL. */
void bus_history_vm_changed(BusHistory *bh, const Vm *vm, uint32_t fields);
void bus_history_vm_updated(BusHistory *bh, const Vm *vm, const char *old_hash, const char *new_hash);
void bus_history_update_failed(BusHistory *bh, const Vm *vm, const char *target, const char *reason);

/* Updater transactions: started when an operator's Apply or Rollback has
 * begun (the caller's credentials are read now), finished from the Updater's
 * events.finished (automatic ones too: trigger "auto-update"; finished at
 * start-up after an interruption: "resume"), ended when its call is answered. */
void bus_history_updater_started(BusHistory *bh, sd_bus_message *msg);
void bus_history_updater_finished(BusHistory *bh, const char *repository, const UpdaterTransaction *t);
void bus_history_updater_ended(BusHistory *bh);

/* Replies to a GetHistory(u limit) call with the entries of that kind (and
 * subject, unless NULL) as a(tssssssst), newest first, limit 0 = all. */
int bus_history_reply(sd_bus_message *msg, BusHistory *bh, HistoryKind kind, const char *subject, uint32_t limit);

/* Vm.GetHistory(u limit) -> a(tssssssst), newest first, 0 = all. */
int bus_history_method_get(sd_bus_message *msg, void *userdata, sd_bus_error *error);
/* Updater.GetHistory(u limit) -> a(tssssssst), the updater's entries, newest first, 0 = all. */
int bus_history_method_get_updater(sd_bus_message *msg, void *userdata, sd_bus_error *error);
