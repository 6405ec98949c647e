/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <math.h>
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

/* The code unit of a "\\uXXXX" escape at data[i], or -1. */
static int escape_unit_at(const char *data, size_t len, size_t i) {
        if (len - i < 6 || data[i] != '\\' || data[i + 1] != 'u')
                return -1;
        int v = 0;
        for (size_t k = i + 2; k < i + 6; k++) {
                int d = g_ascii_xdigit_value(data[k]);
                if (d < 0)
                        return -1;
                v = v * 16 + d;
        }
        return v;
}

/* json-glib decodes a lone UTF-16 surrogate escape into bytes that are not
 * UTF-8; kept (in an unknown key, say) and written back, they make a file
 * nothing reads again. Only a high surrogate followed by a low one is text. */
static bool lone_surrogate_at(const char *data, size_t len, size_t i) {
        int u = escape_unit_at(data, len, i);
        if (u >= 0xDC00 && u <= 0xDFFF)
                return true;
        if (u < 0xD800 || u > 0xDBFF)
                return false;
        int next = escape_unit_at(data, len, i + 6);
        return next < 0xDC00 || next > 0xDFFF;
}

static char *path_at_offset(const char *data, size_t end);

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
                                /* json-glib's scanner also takes C escapes ("\\777" is
                                 * the byte 0xff): only JSON's own, or the text read is
                                 * not the text written back. */
                                if (i + 1 >= len || !strchr("\"\\/bfnrtu", data[i + 1]) ||
                                    (data[i + 1] == 'u' && escape_unit_at(data, len, i) < 0)) {
                                        g_autofree char *where = path_at_offset(data, i);
                                        return fail(ret_error, what, "contains an escape JSON does not have at byte %zu%s%s",
                                                    i, where ? ", in " : "", strempty(where));
                                }
                                if (lone_surrogate_at(data, len, i)) {
                                        g_autofree char *where = path_at_offset(data, i);
                                        return fail(ret_error, what, "contains a lone UTF-16 surrogate escape (not UTF-8) at byte %zu%s%s",
                                                    i, where ? ", in " : "", strempty(where));
                                }
                                if (escape_unit_at(data, len, i) >= 0xD800 && escape_unit_at(data, len, i) <= 0xDBFF)
                                        i += 6; /* the pair's low half */
                                i++;
                        }
                } else if (c == '"')
                        in_string = true;
                else if ((c == '[' || c == '{') && ++depth > JSON_LOAD_MAX_DEPTH)
                        return fail(ret_error, what, "nested deeper than %d levels", JSON_LOAD_MAX_DEPTH);
                else if ((c == ']' || c == '}') && depth > 0 && --depth == 0) {
                        /* json-glib reads the first document and ignores the
                         * rest: a second one pasted after it would be lost. */
                        for (size_t k = i + 1; k < len; k++)
                                if (!strchr(" \t\r\n", data[k]))
                                        return fail(ret_error, what, "has more after its end (byte %zu)", k);
                        return 0;
                }
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

#define PATH_NAME_MAX 64

/* A member name that may appear in an error: a plain identifier, what a
 * setting or a valid env key looks like (env key names are public: EnvKeys).
 * Anything else could be a pasted secret and is shown as "?". */
static bool name_is_plain(const char *s, size_t n) {
        if (n == 0 || n > PATH_NAME_MAX || !(g_ascii_isalpha(s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isalnum(s[i]) && s[i] != '_')
                        return false;
        return true;
}

/* A string in key position becomes the frame's key only when its ':'
 * follows: a value pasted where a key was forgotten ({"A": "x", "hunter2"})
 * sits in key position too, and must never be shown. */
typedef struct PathFrame {
        bool object;
        bool expect_key;
        bool have_pending;
        char pending[PATH_NAME_MAX + 1];
        char key[PATH_NAME_MAX + 1];  /* "" = none yet, "?" = not shown */
} PathFrame;

static size_t offset_of(const char *data, size_t len, unsigned line, unsigned column) {
        size_t i = 0;
        for (unsigned l = 1; l < line && i < len; i++)
                if (data[i] == '\n')
                        l++;
        return MIN(len, i + (column > 0 ? column - 1 : 0));
}

static char *path_at_offset(const char *data, size_t end);

char *json_load_path_at(const char *data, size_t len, unsigned line, unsigned column) {
        return path_at_offset(data, offset_of(data, len, line, column));
}

/* The member path of the value at byte end, built only from names whose ':'
 * was seen; NULL at the top level or deeper than the guard allows. */
static char *path_at_offset(const char *data, size_t end) {
        PathFrame stack[JSON_LOAD_MAX_DEPTH + 1];
        unsigned depth = 0;
        size_t str_start = 0;
        bool in_string = false;

        for (size_t i = 0; i < end; i++) {
                char c = data[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"') {
                                in_string = false;
                                PathFrame *f = depth > 0 ? &stack[depth - 1] : NULL;
                                if (f && f->object && f->expect_key) {
                                        size_t n = i - str_start;
                                        if (name_is_plain(data + str_start, n)) {
                                                memcpy(f->pending, data + str_start, n);
                                                f->pending[n] = '\0';
                                        } else
                                                strcpy(f->pending, "?");
                                        f->have_pending = true;
                                        f->expect_key = false;
                                }
                        }
                        continue;
                }
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
                        continue;
                /* Outside strings only JSON's own characters: anything else
                 * (comments, say, which json-glib's scanner may skip) and this
                 * scanner may be out of step with the parser: no path. Bare
                 * words (true, a misplaced unquoted value) are values. */
                if (!strchr("{}[]:,\"-+.", c) && !g_ascii_isalnum(c) && c != '_')
                        return NULL;
                PathFrame *f = depth > 0 ? &stack[depth - 1] : NULL;
                if (f && f->have_pending) {
                        /* A name is a key only when its ':' comes next. */
                        f->have_pending = false;
                        if (c == ':') {
                                strcpy(f->key, f->pending);
                                continue;
                        }
                }
                if (c == '"') {
                        in_string = true;
                        str_start = i + 1;
                } else if (c == '{' || c == '[') {
                        if (depth > JSON_LOAD_MAX_DEPTH)
                                return NULL;
                        stack[depth++] = (PathFrame) { .object = c == '{', .expect_key = c == '{' };
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
                else if (c == ',' && f && f->object) {
                        f->expect_key = true;
                        f->key[0] = '\0';
                }
        }

        GString *path = g_string_new(NULL);
        for (unsigned k = 0; k < depth; k++) {
                if (!stack[k].object)
                        g_string_append(path, "[]");
                else if (stack[k].key[0]) {
                        if (path->len > 0)
                                g_string_append_c(path, '.');
                        g_string_append(path, stack[k].key);
                }
        }
        if (path->len == 0) {
                g_string_free(path, TRUE);
                return NULL;
        }
        return g_string_free(path, FALSE);
}

int json_load_syntax_error(const GError *e, const char *data, size_t len, char **ret_error) {
        /* json-glib's message quotes the offending token, which may be a
         * secret: only its position ("<data>:LINE:COLUMN: ...") is taken. */
        unsigned line, column;
        if (!e->message || sscanf(e->message, "<data>:%u:%u:", &line, &column) != 2) {
                *ret_error = g_strdup_printf("not valid JSON (%s)", parse_error_kind(e));
                return -EINVAL;
        }
        g_autofree char *where = data ? json_load_path_at(data, len, line, column) : NULL;
        *ret_error = g_strdup_printf("not valid JSON at line %u, column %u (%s%s%s)", line, column, parse_error_kind(e),
                                     where ? ", in " : "", strempty(where));
        return -EINVAL;
}

/* json-glib turns a number beyond double's range ("1e99999") into inf, and
 * writes it back as "inf.0": not JSON. Such a number is refused here, with
 * its path (names shown only when plain, as above). */
static bool find_non_finite(JsonNode *node, GString *path) {
        if (JSON_NODE_HOLDS_VALUE(node))
                return json_node_get_value_type(node) == G_TYPE_DOUBLE && !isfinite(json_node_get_double(node));
        if (JSON_NODE_HOLDS_ARRAY(node)) {
                JsonArray *a = json_node_get_array(node);
                for (guint i = 0; i < json_array_get_length(a); i++) {
                        size_t keep = path->len;
                        g_string_append(path, "[]");
                        if (find_non_finite(json_array_get_element(a, i), path))
                                return true;
                        g_string_truncate(path, keep);
                }
        } else if (JSON_NODE_HOLDS_OBJECT(node)) {
                JsonObject *o = json_node_get_object(node);
                g_autoptr(GList) members = json_object_get_members(o);
                for (GList *l = members; l; l = l->next) {
                        const char *name = l->data;
                        size_t keep = path->len;
                        if (path->len > 0)
                                g_string_append_c(path, '.');
                        g_string_append(path, name_is_plain(name, strlen(name)) ? name : "?");
                        if (find_non_finite(json_object_get_member(o, name), path))
                                return true;
                        g_string_truncate(path, keep);
                }
        }
        return false;
}

/* json-glib keeps the last of two members with one name: {"env":{...},
 * "env":{}} would drop every secret without a word. Refused instead. */
typedef struct Members {
        GHashTable *seen;       /* "<object pointer>/<name>" */
        char *duplicate;        /* the first name seen twice */
} Members;

static void on_object_member(JsonParser *parser, JsonObject *object, gchar *name, gpointer userdata) {
        Members *m = userdata;
        if (m->duplicate)
                return;
        char *key = g_strdup_printf("%p/%s", (void *) object, name);
        if (!g_hash_table_add(m->seen, key))
                m->duplicate = g_strdup(name);
}

int json_load_object(const char *data, size_t len, size_t max, const char *what,
                     JsonParser **ret_parser, JsonObject **ret_obj, char **ret_error) {
        int r = prescan(data, len, max, what, ret_error);
        if (r < 0)
                return r;
        g_autoptr(JsonParser) p = json_parser_new_immutable();
        g_autoptr(GError) err = NULL;
        g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        Members members = { .seen = seen };
        gulong handler = g_signal_connect(p, "object-member", G_CALLBACK(on_object_member), &members);
        bool loaded = json_parser_load_from_data(p, data, (gssize) len, &err);
        g_signal_handler_disconnect(p, handler);
        g_autofree char *duplicate = members.duplicate;
        if (!loaded) {
                g_autofree char *why = NULL;
                (void) json_load_syntax_error(err, data, len, &why);
                return fail(ret_error, what, "%s", why);
        }
        if (duplicate)
                return fail(ret_error, what, "has the member %s%s%s twice in one object",
                            name_is_plain(duplicate, strlen(duplicate)) ? "'" : "",
                            name_is_plain(duplicate, strlen(duplicate)) ? duplicate : "(a name not shown)",
                            name_is_plain(duplicate, strlen(duplicate)) ? "'" : "");
        JsonNode *root = json_parser_get_root(p);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return fail(ret_error, what, "must be a JSON object");
        g_autoptr(GString) path = g_string_new(NULL);
        if (find_non_finite(root, path))
                return fail(ret_error, what, "a number is out of range%s%s", path->len ? ", in " : "", path->str);
        *ret_obj = json_node_get_object(root);
        *ret_parser = g_steal_pointer(&p);
        return 0;
}
