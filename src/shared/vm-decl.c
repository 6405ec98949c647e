/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "shared/macro.h"
#include "shared/validate.h"
#include "shared/vm-decl.h"

VmDecl *vm_decl_new(const char *name, const char *source) {
        VmDecl *d = g_new0(VmDecl, 1);
        d->name = g_strdup(name);
        d->source = g_strdup(source);
        d->update_strategy = g_strdup("");
        d->adopt_policy = g_strdup("");
        d->autostart = true;
        d->env_keys = g_new0(char *, 1);
        return d;
}

VmDecl *vm_decl_copy(const VmDecl *s) {
        VmDecl *d = vm_decl_new(s->name, s->source);
        g_free(d->update_strategy), d->update_strategy = g_strdup(s->update_strategy);
        g_free(d->adopt_policy), d->adopt_policy = g_strdup(s->adopt_policy);
        d->autostart = s->autostart;
        g_strfreev(d->env_keys), d->env_keys = g_strdupv(s->env_keys);
        return d;
}

void vm_decl_free(VmDecl *d) {
        if (!d)
                return;
        g_free(d->name);
        g_free(d->source);
        g_free(d->update_strategy);
        g_free(d->adopt_policy);
        g_strfreev(d->env_keys);
        g_free(d);
}

bool vm_decl_equal(const VmDecl *a, const VmDecl *b) {
        return streq(a->name, b->name) && streq(a->source, b->source) &&
               streq(a->update_strategy, b->update_strategy) && streq(a->adopt_policy, b->adopt_policy) &&
               a->autostart == b->autostart &&
               g_strv_equal((const char *const *) a->env_keys, (const char *const *) b->env_keys);
}

const char *vm_name_problem(const char *name) {
        if (isempty(name))
                return "must not be empty";
        if (strlen(name) > VM_NAME_MAX)
                return "is too long (at most 255 bytes)";
        for (const char *c = name; *c; c++)
                if (!g_ascii_isalnum(*c) && !strchr("-_. @~!$^()", *c))
                        return "may hold only ASCII letters, digits and - _ . space @ ~ ! $ ^ ( ) (dstack's VM names)";
        return NULL;
}

const char *vm_source_file_path(const char *source) {
        return source && g_str_has_prefix(source, "file:///") ? source + strlen("file://") : NULL;
}

const char *vm_source_problem(const char *source) {
        if (isempty(source) || strlen(source) > VM_SOURCE_MAX)
                return "must be an http(s):// URL or a file:/// path of at most 4096 bytes";
        const char *path = vm_source_file_path(source);
        if (path) {
                if (strstr(path, "/../") || g_str_has_suffix(path, "/..") || g_str_has_suffix(path, "/"))
                        return "must name a file by an absolute path without \"..\"";
                for (const char *c = path; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f || *c == '%' || *c == '?' || *c == '#')
                                return "must name a file by a plain path (no %-escapes, '?', '#' or control bytes)";
                return NULL;
        }
        if (g_str_has_prefix(source, "file:"))
                return "must be file:/// followed by an absolute path";
        if (!url_is_valid(source) || g_str_has_prefix(source, "unix:"))
                return "must be an http:// or https:// URL without credentials, or file:///path";
        return NULL;
}

static const char *check_strategy(const char *v) {
        return isempty(v) || streq(v, "recreate") || streq(v, "in-place") ? NULL
                                                                          : "must be \"recreate\" or \"in-place\"";
}

static const char *check_adopt_policy(const char *v) {
        return isempty(v) || streq(v, "keep") || streq(v, "redeploy") ? NULL : "must be \"keep\" or \"redeploy\"";
}

static int fail(char **ret_error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        *ret_error = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool is_string(JsonNode *n) {
        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING;
}

static int decl_string(JsonNode *n, const char *name, const char *field, const char *(*check)(const char *),
                       char **dst, char **ret_error) {
        if (!is_string(n))
                return fail(ret_error, "vms.%s.%s: must be a string", name, field);
        const char *v = json_node_get_string(n);
        const char *why = check(v);
        if (why)
                return fail(ret_error, "vms.%s.%s: %s", name, field, why);
        g_free(*dst);
        *dst = g_strdup(v);
        return 0;
}

static int decl_env_keys(JsonNode *n, const char *name, char ***dst, char **ret_error) {
        if (!n || !JSON_NODE_HOLDS_ARRAY(n))
                return fail(ret_error, "vms.%s.env_keys: must be an array of env key names", name);
        JsonArray *a = json_node_get_array(n);
        guint len = json_array_get_length(a);
        if (len > ENV_MAX_ENTRIES)
                return fail(ret_error, "vms.%s.env_keys: more than %d keys", name, ENV_MAX_ENTRIES);
        g_auto(GStrv) keys = g_new0(char *, len + 1);
        for (guint i = 0; i < len; i++) {
                JsonNode *e = json_array_get_element(a, i);
                if (!is_string(e) || !env_key_is_valid(json_node_get_string(e)))
                        return fail(ret_error, "vms.%s.env_keys[%u]: must be an env key name", name, i);
                keys[i] = g_strdup(json_node_get_string(e));
        }
        g_strfreev(*dst);
        *dst = g_steal_pointer(&keys);
        return 0;
}

static const char *check_source(const char *v) {
        return vm_source_problem(v);
}

static int decl_from_json(const char *name, JsonNode *node, VmDecl **ret, char **ret_error) {
        const char *why = vm_name_problem(name);
        if (why)
                return fail(ret_error, "vms: a VM name %s", why);
        if (!JSON_NODE_HOLDS_OBJECT(node))
                return fail(ret_error, "vms.%s: must be an object", name);
        JsonObject *o = json_node_get_object(node);
        g_autoptr(VmDecl) d = vm_decl_new(name, "");

        JsonObjectIter it;
        const char *key;
        JsonNode *v;
        int r = 0;
        json_object_iter_init(&it, o);
        while (r >= 0 && json_object_iter_next(&it, &key, &v)) {
                if (streq(key, "source"))
                        r = decl_string(v, name, key, check_source, &d->source, ret_error);
                else if (streq(key, "update_strategy"))
                        r = decl_string(v, name, key, check_strategy, &d->update_strategy, ret_error);
                else if (streq(key, "adopt_policy"))
                        r = decl_string(v, name, key, check_adopt_policy, &d->adopt_policy, ret_error);
                else if (streq(key, "env_keys"))
                        r = decl_env_keys(v, name, &d->env_keys, ret_error);
                else if (streq(key, "autostart")) {
                        if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_BOOLEAN)
                                r = fail(ret_error, "vms.%s.autostart: must be true or false", name);
                        else
                                d->autostart = json_node_get_boolean(v);
                } else
                        r = fail(ret_error, "vms.%s: unknown member", name);
        }
        if (r < 0)
                return r;
        if (isempty(d->source))
                return fail(ret_error, "vms.%s.source: missing", name);
        *ret = g_steal_pointer(&d);
        return 0;
}

int vm_decls_from_json(JsonNode *node, GPtrArray **ret, char **ret_error) {
        g_autoptr(GPtrArray) decls = g_ptr_array_new_with_free_func((GDestroyNotify) vm_decl_free);
        if (JSON_NODE_HOLDS_NULL(node)) {
                *ret = g_steal_pointer(&decls);
                return 0;
        }
        if (!JSON_NODE_HOLDS_OBJECT(node))
                return fail(ret_error, "vms: must be an object of VMs by name");
        JsonObject *o = json_node_get_object(node);
        if (json_object_get_size(o) > VMS_MAX)
                return fail(ret_error, "vms: more than %u VMs", VMS_MAX);
        JsonObjectIter it;
        const char *name;
        JsonNode *v;
        json_object_iter_init(&it, o);
        while (json_object_iter_next(&it, &name, &v)) {
                VmDecl *d = NULL;
                int r = decl_from_json(name, v, &d, ret_error);
                if (r < 0)
                        return r;
                g_ptr_array_add(decls, d);
        }
        *ret = g_steal_pointer(&decls);
        return 0;
}

JsonNode *vm_decls_to_json(GPtrArray *decls) {
        JsonObject *o = json_object_new();
        for (guint i = 0; decls && i < decls->len; i++) {
                const VmDecl *d = g_ptr_array_index(decls, i);
                JsonObject *e = json_object_new();
                json_object_set_string_member(e, "source", d->source);
                if (!isempty(d->update_strategy))
                        json_object_set_string_member(e, "update_strategy", d->update_strategy);
                if (!isempty(d->adopt_policy))
                        json_object_set_string_member(e, "adopt_policy", d->adopt_policy);
                if (!d->autostart)
                        json_object_set_boolean_member(e, "autostart", false);
                JsonArray *keys = json_array_new();
                for (char **k = d->env_keys; k && *k; k++)
                        json_array_add_string_element(keys, *k);
                json_object_set_array_member(e, "env_keys", keys);
                json_object_set_object_member(o, d->name, e);
        }
        JsonNode *n = json_node_init_object(json_node_alloc(), o);
        json_object_unref(o);
        return n;
}
