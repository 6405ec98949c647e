/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The audit history: what the launcher did to the VM and to the
 * updater's deployment, when, who or what asked, from what to what, and how
 * it ended. Persisted as JSON in the state directory (atomic replace on every
 * append), bounded (the oldest entries are dropped), never holding a secret:
 * callers pass compose hashes, commits, action words and error messages that
 * are already safe for the bus. Knows nothing of D-Bus. */

#define HISTORY_FILE "history.json"
#define HISTORY_MAX_DEFAULT 200u
#define HISTORY_FIELD_MAX 256u   /* bytes kept of action, trigger, subject, from, to */
#define HISTORY_REASON_MAX 512u  /* bytes kept of reason */

typedef enum HistoryKind {
        HISTORY_KIND_VM,
        HISTORY_KIND_UPDATER,
        _HISTORY_KIND_MAX,
        _HISTORY_KIND_INVALID = -1,
} HistoryKind;

const char *history_kind_to_string(HistoryKind k);
HistoryKind history_kind_from_string(const char *s);

typedef struct HistoryEntry {
        uint64_t timestamp_usec;  /* CLOCK_REALTIME when it finished; 0 = now (history_append fills it) */
        HistoryKind kind;
        const char *subject;      /* the VM's name, or the updater's repository */
        const char *action;       /* deploy update start stop restart apply rollback ... */
        const char *trigger;      /* "uid 0 (platformctl)", "poll", "auto-update" */
        const char *from;         /* compose hash or commit before ("" when none) */
        const char *to;           /* compose hash or commit after, or the target of a failure */
        bool ok;
        const char *reason;       /* why it failed ("" when ok) */
        uint64_t duration_usec;   /* 0 when not measured */
} HistoryEntry;

typedef struct History History;

/* Called after each append, with the stored (bounded, valid UTF-8) entry. */
typedef void (*history_appended_cb)(History *h, const HistoryEntry *e, void *userdata);

/* Loads path if it exists. A file that cannot be parsed is moved aside to
 * path.corrupt (logged) and the history starts empty; entries that are not
 * well formed are skipped. max = 0 means HISTORY_MAX_DEFAULT. */
int history_new(const char *path, unsigned max, History **ret);
void history_free(History *h);
void history_set_callback(History *h, history_appended_cb cb, void *userdata);

/* Copies e (strings cut to their bound at a character boundary, invalid
 * UTF-8 replaced, NULL as ""), drops the oldest entries beyond the bound and
 * writes the file. The entry is kept in memory even when the write fails
 * (the error is returned and logged by the caller). The callback runs in
 * both cases. */
int history_append(History *h, const HistoryEntry *e);

/* 0 = oldest. The pointers stay valid until the next append or free. */
size_t history_size(const History *h);
const HistoryEntry *history_get(const History *h, size_t i);
