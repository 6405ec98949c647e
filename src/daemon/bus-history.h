/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "core/history.h"
#include "core/reconciler.h"
#include "core/updater.h"

/* The audit history on the bus: the file the reconciler's operations (each
 * writes its own entries) and the Updater's transactions are recorded in;
 * Vm.GetHistory, Updater.GetHistory and their HistoryAdded signals. */

typedef struct Manager Manager;
typedef struct BusHistory BusHistory;

/* Loads <state_dir>/history.json. */
int bus_history_new(Manager *m, BusHistory **ret);
void bus_history_free(BusHistory *bh);

/* The history itself, for other parts of the daemon (the Updater's
 * transactions): history_append(bus_history_get(m->history), &entry). */
History *bus_history_get(BusHistory *bh);
/* history_append, logging a write failure. */
int bus_history_append(BusHistory *bh, const HistoryEntry *e);

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

/* Updater.GetHistory(u limit) -> a(tssssssst), the updater's entries, newest first, 0 = all. */
int bus_history_method_get_updater(sd_bus_message *msg, void *userdata, sd_bus_error *error);
