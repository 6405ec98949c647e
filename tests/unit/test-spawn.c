/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "test-spawn.h"
#include "tests.h"

pid_t test_spawn_ready(const char *const *argv, char *line, size_t linesz) {
        int p[2];
        assert_se(pipe2(p, O_CLOEXEC) == 0);
        pid_t pid = fork();
        assert_se(pid >= 0);
        if (pid == 0) {
                char fdbuf[16];
                const char *args[64];
                size_t n = 0;
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                snprintf(fdbuf, sizeof fdbuf, "%d", dup(p[1])); /* the dup is not O_CLOEXEC */
                for (; argv[n] && n < 60; n++)
                        args[n] = argv[n];
                args[n++] = "--ready-fd";
                args[n++] = fdbuf;
                args[n] = NULL;
                execv(args[0], (char **) args);
                _exit(127);
        }
        close(p[1]);
        FILE *f = fdopen(p[0], "r");
        assert_se(f && fgets(line, (int) linesz, f));
        fclose(f);
        line[strcspn(line, "\n")] = '\0';
        return pid;
}
