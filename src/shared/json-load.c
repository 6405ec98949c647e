/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/json-load.h"
#include "shared/macro.h"

_printf_(3, 4)
static int fail(char **ret_error, const char *what, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (ret_error && (what ? asprintf(ret_error, "%s: %s", what, msg) : asprintf(ret_error, "%s", msg)) < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static bool escaped_nul_at(const char *data, size_t len, size_t i) {
        return len - i >= 6 && memcmp(data + i, "\\u0000", 6) == 0;
}

static int prescan(const char *data, size_t len, size_t max, const char *what, char **ret_error) {
        unsigned depth = 0;
        bool in_string = false;

        if (len > max)
                return fail(ret_error, what, "larger than %zu bytes", max);
        for (size_t i = 0; i < len; i++) {
                char c = data[i];
                if (c == '\0')
                        return fail(ret_error, what, "contains a NUL byte");
                if (in_string) {
                        if (c == '"')
                                in_string = false;
                        else if (c == '\\') {
                                if (escaped_nul_at(data, len, i))
                                        return fail(ret_error, what, "contains an escaped NUL (\\u0000)");
                                i++;
                        }
                } else if (c == '"')
                        in_string = true;
                else if ((c == '[' || c == '{') && ++depth > JSON_LOAD_MAX_DEPTH)
                        return fail(ret_error, what, "nested deeper than %d levels", JSON_LOAD_MAX_DEPTH);
                else if ((c == ']' || c == '}') && depth > 0)
                        depth--;
        }
        return 0;
}

static const char *parse_error_kind(const GError *e) {
        if (e->domain != JSON_PARSER_ERROR)
                return "syntax error";
        switch (e->code) {
        case JSON_PARSER_ERROR_TRAILING_COMMA:
                return "trailing comma";
        case JSON_PARSER_ERROR_MISSING_COMMA:
                return "missing comma";
        case JSON_PARSER_ERROR_MISSING_COLON:
                return "missing colon";
        case JSON_PARSER_ERROR_INVALID_BAREWORD:
                return "invalid bare word";
        case JSON_PARSER_ERROR_EMPTY_MEMBER_NAME:
                return "empty member name";
        case JSON_PARSER_ERROR_INVALID_DATA:
                return "invalid data";
        default:
                return "syntax error";
        }
}

int json_load_syntax_error(const GError *e, char **ret_error) {
        /* json-glib's message quotes the offending token, which may be a
         * secret: only its position ("<data>:LINE:COLUMN: ...") is taken. */
        unsigned line, column;
        if (e->message && sscanf(e->message, "<data>:%u:%u:", &line, &column) == 2)
                *ret_error = g_strdup_printf("not valid JSON at line %u, column %u (%s)", line, column,
                                             parse_error_kind(e));
        else
                *ret_error = g_strdup_printf("not valid JSON (%s)", parse_error_kind(e));
        return -EINVAL;
}

int json_load_object(const char *data, size_t len, size_t max, const char *what,
                     JsonParser **ret_parser, JsonObject **ret_obj, char **ret_error) {
        int r = prescan(data, len, max, what, ret_error);
        if (r < 0)
                return r;
        g_autoptr(JsonParser) p = json_parser_new_immutable();
        g_autoptr(GError) err = NULL;
        if (!json_parser_load_from_data(p, data, (gssize) len, &err)) {
                g_autofree char *why = NULL;
                (void) json_load_syntax_error(err, &why);
                return fail(ret_error, what, "%s", why);
        }
        JsonNode *root = json_parser_get_root(p);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return fail(ret_error, what, "must be a JSON object");
        *ret_obj = json_node_get_object(root);
        *ret_parser = g_steal_pointer(&p);
        return 0;
}
