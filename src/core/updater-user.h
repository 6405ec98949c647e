/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "clients/step-runner.h"
#include "shared/config-file.h"

/* Who runs the Updater's commands: UpdaterUser, "" = the owner of the
 * repository's top directory. Never root while the repository (or its .git)
 * belongs to someone else: whoever can write the repository would become
 * root through a core.fsmonitor line or a committed build script. */

typedef struct RepoOwner {
        uid_t top;      /* owner of <repo> */
        uid_t git;      /* owner of <repo>/.git */
        bool known;     /* false: not mapped in our user namespace (the unit's PrivateUsers=):
                         * someone other than root, but who is not known here */
} RepoOwner;

/* false for the overflow uid in a user namespace that maps only some uids
 * (PrivateUsers=): the file belongs to someone, but not to root. */
bool repo_uid_known(uid_t uid);

/* Reads the owners without following a symlinked .git (O_PATH, O_NOFOLLOW).
 * -ENOENT: no such directory; -ENOTDIR: no .git directory. */
int repo_owner_read(const char *repo, RepoOwner *ret, char **ret_error);

/* The owner probe, run as root (inspect_only) when the owner is not known
 * here: "stat -L --format=%u -- <repo> <repo>/.git". Its stdout → owner. */
char **repo_owner_probe_argv(const char *repo);
int repo_owner_parse_probe(const char *data, RepoOwner *ret);

/* Applies the rules of UpdaterUser to an owner. 0: *ret_user. -ESRCH: no
 * such user; -EPERM: root while the repository belongs to someone else, or
 * while someone else can write it (root_path_check_repository());
 * -EAGAIN: the setting is "" and the owner is not known here (run the
 * probe). Messages name the user and the repository. */
int updater_user_decide(const char *repo, const char *setting, const RepoOwner *owner, StepUser **ret_user,
                        char **ret_error);

/* For Config.SetSettings: checks, with the file system, the Updater settings
 * that change from old to new: UpdaterUser (as above; the owner read now),
 * every command's program (a relative argv[0] is looked for in the
 * repository), the units (not dstack's, not the one the VMM runs in). NULL
 * when acceptable, else "Setting 'X' ..." (caller frees). */
char *updater_settings_check(const LauncherConfig *old, const LauncherConfig *new, const char *vmm_url);
