/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/step-runner.h"

/* What step-runner.c hands a back end (process.c, transient-unit.c): every
 * name resolved, the environment complete. Internal to src/clients. */
typedef struct StepSpec {
        const char *name;        /* the step, for the log */
        const char *path;        /* absolute path of the program */
        char *const *argv;
        char *const *envp;       /* the complete environment */
        const char *cwd;
        const StepUser *user;    /* NULL: run as this process's own user (tests of a back end only) */
        uint64_t timeout_usec;   /* 0 = none */
        uint64_t kill_grace_usec;
        bool quiet;
        bool inspect_only;
} StepSpec;
