/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Paths whose contents root acts on (runs git in, executes), so that nobody
 * but root may be able to change what is there between the check and the
 * use: the repository the Updater's commands run in as root.
 *
 * A directory passes when it is owned by root (uid 0 as this process sees
 * it: under PrivateUsers= every other owner reads as the overflow uid) and
 * is not writable by group or others. A directory on the way to it passes
 * also when it is writable by others but sticky (/tmp): only root may then
 * rename or remove root's entry in it. Symbolic links on the way are
 * followed component by component (at most 40), each directory they pass
 * through checked the same way, so a link in a directory someone else can
 * write is caught as that directory. ACLs are not read. */

/* NULL when every directory from "/" to dir (dir included) passes, else why
 * (malloc'd), naming the directory. */
char *root_path_check_dir(const char *dir);

/* For a program root runs: a regular file owned by root and not writable by
 * group or others, reached through directories that pass as above. NULL when
 * fine, else why (malloc'd). */
char *root_path_check_file(const char *path);

/* For a git working tree run as root: dir as above, its .git a real
 * directory that passes too, and .git/config and .git/config.worktree (when
 * present) regular files owned by root and not writable by group or others:
 * whoever can write any of them chooses what git runs (core.fsmonitor,
 * filter drivers, ...). NULL when fine, else why (malloc'd). */
char *root_path_check_repository(const char *dir);
