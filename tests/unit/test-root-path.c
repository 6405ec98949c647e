/* SPDX-License-Identifier: Apache-2.0 */
/* A repository root may run commands in: every directory from "/" root's
 * and not writable by others (a sticky one on the way is fine), symbolic
 * links followed with the directories they pass through checked, .git and
 * its config root's alone. Ownership needs root; as another user only what
 * needs no chown is tested. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib.h>

#include "core/root-path.h"
#include "shared/macro.h"
#include "tests.h"

static char *base;

static char *at(const char *rel) {
        return g_build_filename(base, rel, NULL);
}

static void mkdir_mode(const char *rel, mode_t mode) {
        g_autofree char *p = at(rel);
        assert_se(mkdir(p, 0700) == 0);
        assert_se(chmod(p, mode) == 0);
}

static void write_file(const char *rel, mode_t mode) {
        g_autofree char *p = at(rel);
        assert_se(g_file_set_contents(p, "[core]\n", -1, NULL));
        assert_se(chmod(p, mode) == 0);
}

/* A POSIX access ACL in the kernel's xattr form (linux/posix_acl_xattr.h):
 * the owner, group and others as the mode says, uid 65534 rwx, and mask. */
static int set_acl(const char *rel, unsigned mask) {
        struct {
                uint16_t tag, perm;
                uint32_t id;
        } e[] = {
                { 0x01, 7, UINT32_MAX }, /* ACL_USER_OBJ */
                { 0x02, 7, 65534 },      /* ACL_USER nobody: rwx */
                { 0x04, 5, UINT32_MAX }, /* ACL_GROUP_OBJ */
                { 0x10, (uint16_t) mask, UINT32_MAX }, /* ACL_MASK */
                { 0x20, 5, UINT32_MAX }, /* ACL_OTHER */
        };
        uint8_t buf[4 + sizeof e];
        uint32_t version = 2;
        memcpy(buf, &version, 4);
        memcpy(buf + 4, e, sizeof e);
        g_autofree char *p = at(rel);
        return setxattr(p, "system.posix_acl_access", buf, sizeof buf, 0) < 0 ? -errno : 0;
}

static void expect(const char *rel, const char *fragment) {
        g_autofree char *p = at(rel);
        g_autofree char *why = root_path_check_repository(p);
        if (!fragment) {
                if (why)
                        fprintf(stderr, "unexpected: %s\n", why);
                assert_se(!why);
                return;
        }
        if (!why || !strstr(why, fragment))
                fprintf(stderr, "%s: wanted '%s', got '%s'\n", rel, fragment, strempty(why));
        assert_se(why && strstr(why, fragment));
}

int main(void) {
        if (geteuid() != 0) {
                printf("test-root-path: not root, skipped (ownership is the point)\n");
                return 77;
        }
        base = g_dir_make_tmp("test-root-path-XXXXXX", NULL); /* in /tmp: sticky, on the way */
        assert_se(base);
        assert_se(chmod(base, 0755) == 0);

        mkdir_mode("repo", 0755);
        mkdir_mode("repo/.git", 0755);
        write_file("repo/.git/config", 0644);
        expect("repo", NULL);
        assert_se(!root_path_check_dir(base));

        /* git init --shared=group */
        g_autofree char *git = at("repo/.git");
        assert_se(chmod(git, 02775) == 0);
        expect("repo", "repo/.git is writable by group or others (mode 2775)");
        assert_se(chmod(git, 0755) == 0);
        g_autofree char *config = at("repo/.git/config");
        assert_se(chmod(config, 0664) == 0);
        expect("repo", "repo/.git/config is writable by group or others");
        assert_se(chmod(config, 0644) == 0);
        assert_se(chown(config, 1, 1) == 0);
        expect("repo", "repo/.git/config is owned by uid 1, not by root");
        assert_se(chown(config, 0, 0) == 0);
        write_file("repo/.git/config.worktree", 0666);
        expect("repo", "config.worktree is writable");
        g_autofree char *wt = at("repo/.git/config.worktree");
        assert_se(unlink(wt) == 0);
        /* a .git/config that is a link: to a file of someone else's, maybe */
        assert_se(rename(config, wt) == 0 && symlink("config.worktree", config) == 0);
        expect("repo", "repo/.git/config is not a regular file");
        assert_se(unlink(config) == 0 && rename(wt, config) == 0);
        expect("repo", NULL);

        /* an ACL that lets uid 65534 write .git shows in the mode as its mask */
        int q = set_acl("repo/.git", 7);
        if (q == -EOPNOTSUPP)
                printf("ACLs: not supported on %s, skipped\n", base);
        else {
                assert_se(q == 0);
                expect("repo", "repo/.git is writable by group or others, or by a user or group its ACL names "
                               "(mode 0775)");
                /* the same entry under a mask without write: nobody may write */
                assert_se(set_acl("repo/.git", 5) == 0);
                expect("repo", NULL);
                assert_se(removexattr(git, "system.posix_acl_access") == 0);
                assert_se(chmod(git, 0755) == 0);
                expect("repo", NULL);
        }

        /* the top: sticky is no excuse for the repository itself */
        g_autofree char *top = at("repo");
        assert_se(chmod(top, 01777) == 0);
        expect("repo", "repo is writable by group or others (mode 1777)");
        assert_se(chmod(top, 0755) == 0);

        /* a directory on the way that someone else owns, or may write */
        mkdir_mode("theirs", 0755);
        mkdir_mode("theirs/repo", 0755);
        mkdir_mode("theirs/repo/.git", 0755);
        g_autofree char *theirs = at("theirs");
        assert_se(chown(theirs, 1, 1) == 0);
        expect("theirs/repo", "theirs is owned by uid 1, not by root");
        assert_se(chown(theirs, 0, 0) == 0 && chmod(theirs, 0775) == 0);
        expect("theirs/repo", "theirs is writable by group or others (mode 0775)");
        assert_se(chmod(theirs, 01777) == 0); /* sticky, like /tmp: fine on the way */
        expect("theirs/repo", NULL);
        assert_se(chmod(theirs, 0775) == 0);

        /* links: root's link in root's directory, to root's repository: fine */
        g_autofree char *link = at("link");
        assert_se(symlink("repo", link) == 0);
        expect("link", NULL);
        /* a link through a directory someone else may write */
        g_autofree char *via = at("via");
        g_autofree char *target = g_strdup_printf("%s/theirs/../repo", base);
        assert_se(symlink(target, via) == 0);
        expect("via", "theirs is writable by group or others");
        /* the link's own directory is what matters: a link in theirs/ */
        g_autofree char *inner = at("theirs/link");
        assert_se(symlink("../repo", inner) == 0);
        expect("theirs/link", "theirs is writable by group or others");
        /* a loop */
        g_autofree char *loop = at("loop");
        assert_se(symlink("loop", loop) == 0);
        expect("loop", "cannot be followed");
        /* missing, not a directory, .git a file */
        expect("missing", "cannot be opened");
        expect("repo/.git/config", "is not a directory");
        mkdir_mode("wt", 0755);
        g_autofree char *gitfile = at("wt/.git");
        assert_se(g_file_set_contents(gitfile, "gitdir: /somewhere\n", -1, NULL));
        expect("wt", "wt/.git is not a directory");
        /* a program root runs */
        g_autofree char *sh = root_path_check_file("/bin/sh");
        assert_se(!sh);
        write_file("prog", 0755);
        g_autofree char *prog = at("prog");
        g_autofree char *ok = root_path_check_file(prog);
        assert_se(!ok);
        assert_se(chmod(prog, 0775) == 0);
        g_autofree char *groupw = root_path_check_file(prog);
        assert_se(groupw && strstr(groupw, "prog is writable by group or others"));
        assert_se(chmod(prog, 0755) == 0 && chown(prog, 1, 1) == 0);
        g_autofree char *owned = root_path_check_file(prog);
        assert_se(owned && strstr(owned, "prog is owned by uid 1"));
        mkdir_mode("other", 0755);
        g_autofree char *dir = at("other");
        write_file("other/prog", 0755);
        g_autofree char *inside = at("other/prog");
        assert_se(chown(dir, 1, 1) == 0);
        g_autofree char *in_other = root_path_check_file(inside);
        assert_se(in_other && strstr(in_other, "other is owned by uid 1"));
        g_autofree char *rel = root_path_check_dir("relative/path");
        assert_se(rel && strstr(rel, "not an absolute path"));

        g_autofree char *rm = g_strdup_printf("rm -rf '%s'", base);
        assert_se(g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL));
        printf("test-root-path: OK\n");
        return 0;
}
