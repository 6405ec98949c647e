/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: what an Updater command prints (src/clients/step-output.c):
 * arbitrary bytes through a pipe into a StepOutput, as a child's stdout, and
 * through step_text_sanitize() with a bound taken from the input. Everything
 * that comes back is valid UTF-8 without control characters other than
 * newline and tab, within its bound, and the byte count is exact. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "clients/step-output.h"
#include "shared/log.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PIPE_INPUT_MAX 60000u /* below a pipe's capacity: one write, never blocking */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        log_set_max_level(LOG_CRIT);
        return 0;
}

static void check_text(const char *s, size_t max) {
        if (!g_utf8_validate(s, -1, NULL))
                abort();
        if (strlen(s) > max)
                abort();
        for (const char *p = s; *p; p++) {
                if (((unsigned char) *p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
                        abort();
                /* no C1 control (U+0080..U+009F) either */
                if ((unsigned char) p[0] == 0xc2 && (unsigned char) p[1] >= 0x80 && (unsigned char) p[1] <= 0x9f)
                        abort();
        }
}

static void through_a_pipe(const uint8_t *data, size_t size) {
        static sd_event *event;
        if (!event && sd_event_new(&event) < 0)
                abort();
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                abort();
        size_t n = MIN(size, PIPE_INPUT_MAX);
        if (n > 0 && write(out[1], data, n) != (ssize_t) n)
                abort();
        close(out[1]);
        close(err[1]);
        StepOutput *o = NULL;
        if (step_output_new(event, "fuzz", true, out[0], err[0], NULL, NULL, &o) < 0)
                abort();
        step_output_finish(o);
        StepResult res = {};
        step_output_fill(o, &res);
        check_text(res.output, 3 * STEP_OUTPUT_TAIL_MAX);
        check_text(res.data, 3 * STEP_OUTPUT_DATA_MAX);
        if (res.output_bytes != n)
                abort();
        step_output_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t max = size > 0 ? data[0] : 0;
        g_autofree char *text = step_text_sanitize((const char *) data, size, max);
        check_text(text, MAX(max, (size_t) 3));
        through_a_pipe(data, size);
        return 0;
}
