/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "shared/macro.h"
#include "shared/text.h"
#include "tests.h"

static void check(const char *in, size_t len, size_t max, TextFlags flags, const char *want) {
        g_autofree char *got = text_sanitize(in, len, max, flags);
        if (!streq(got, want)) {
                fprintf(stderr, "got '%s', want '%s'\n", got, want);
                assert_se(false);
        }
        assert_se(g_utf8_validate(got, -1, NULL));
}

int main(void) {
        check("plain", 5, 100, 0, "plain");
        /* controls: C0, DEL, C1 (U+009B, CSI), ESC; newline and tab kept */
        check("a\x1b[2Jb\x7f\xc2\x9b" "c\n\td\r", 14, 100, 0, "a?[2Jb??c\n\td?");
        check("a\nb\tc\rd", 7, 100, TEXT_ONE_LINE, "a b c d");
        check("a\x01\nb", 4, 100, TEXT_ONE_LINE | TEXT_SPACES, "a  b");
        /* a NUL in the middle does not end the text */
        check("a\0b", 3, 100, 0, "a?b");
        /* invalid UTF-8 becomes U+FFFD */
        check("a\xff" "b", 3, 100, 0, "a\xef\xbf\xbd" "b");
        /* cut between characters, with or without the ellipsis */
        check("ab\xc3\xa9" "cd", 6, 4, 0, "a…");
        check("ab\xc3\xa9" "cd", 6, 3, TEXT_NO_ELLIPSIS, "ab");
        check("ab\xc3\xa9" "cd", 6, 4, TEXT_NO_ELLIPSIS, "ab\xc3\xa9");
        check("  padded \n", 10, 100, TEXT_ONE_LINE | TEXT_STRIP, "padded");
        check("", 0, 10, 0, "");
        printf("test-text: ok\n");
        return 0;
}
