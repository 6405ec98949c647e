/* SPDX-License-Identifier: Apache-2.0 */
/* Replays corpus files (or directories of them) through a libFuzzer entry
 * point when the build has no libFuzzer: every build exercises the corpus. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
        g_autofree char *data = NULL;
        gsize len;
        g_autoptr(GError) err = NULL;
        if (!g_file_get_contents(path, &data, &len, &err)) {
                fprintf(stderr, "%s: %s\n", path, err->message);
                return -1;
        }
        /* A copy of exactly len bytes so ASan/valgrind see overreads. */
        _cleanup_free_ uint8_t *copy = malloc(len ? len : 1);
        if (!copy)
                return -1;
        memcpy(copy, data, len);
        LLVMFuzzerTestOneInput(copy, len);
        return 1;
}

static int replay(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0) {
                perror(path);
                return -1;
        }
        if (!S_ISDIR(st.st_mode))
                return replay_file(path);
        g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
        int n = 0;
        for (const char *name; d && (name = g_dir_read_name(d));) {
                g_autofree char *p = g_build_filename(path, name, NULL);
                int r = replay_file(p);
                if (r < 0)
                        return r;
                n += r;
        }
        return n;
}

int main(int argc, char **argv) {
        int total = 0;
        LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                int r = replay(argv[i]);
                if (r < 0)
                        return 1;
                total += r;
        }
        printf("replayed %d inputs\n", total);
        return total > 0 ? 0 : 1;
}
