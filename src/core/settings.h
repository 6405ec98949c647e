/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "shared/config-file.h"

/* The settings store: the config file on disk and the last good copy of it in
 * memory. A file that does not parse (an empty one included) is never
 * overwritten: it is reported in `error`, the last good copy (or the defaults)
 * stays in force, and commits are refused until the file is fixed and
 * reloaded. A file in force with misspelled keys is reported in `error` too,
 * but written as usual (its unknown keys kept). */
typedef struct SettingsStore {
        char *path;
        LauncherConfig *config;
        char *error;                   /* ConfigError: why the file on disk is not in force, or (file_rejected
                                        * false) what in the file in force was not understood; NULL: neither */
        bool file_rejected;            /* error says the file is not in force: commits refuse to overwrite it */
        bool file_missing;             /* error is "missing": a commit writes the copy in force back */
        char *vmm_url_override;        /* $VMM_URL, as the Rust launcher honoured it */
} SettingsStore;

int settings_store_new(const char *path, SettingsStore **ret);
void settings_store_free(SettingsStore *s);

/* (Re)reads the file. On a bad file (unparsable, not owned by us, writable by
 * group or others, too large) returns < 0 with s->error set and the previous
 * config untouched; a file readable by others is made 0600. A missing file
 * means defaults when nothing was loaded, else the copy in force is kept and
 * reported (-ENOENT). Commits refuse to write over a bad file, and refuse a
 * config whose file would be larger than the launcher reads (-E2BIG). */
int settings_store_load(SettingsStore *s);

/* Writes c atomically (0600) and, on success, makes it the config in force
 * (taking ownership of c). On failure c is freed, nothing changes, and
 * *ret_error says why. */
int settings_store_commit(SettingsStore *s, LauncherConfig *c, char **ret_error);

/* What the launcher uses to reach the VMM: $VMM_URL if set, else the setting. */
const char *settings_store_vmm_url(const SettingsStore *s);
