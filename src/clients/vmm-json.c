/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include <json-glib/json-glib.h>

#include "clients/vmm-json.h"
#include "shared/hex.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"
#include "shared/text.h"

/* Far deeper than any VMM reply; keeps json-glib's recursive parser away
 * from the stack limit on hostile input. */
#define JSON_MAX_DEPTH 32

static const char *const vm_status_table[_VM_STATUS_MAX] = {
        [VM_STATUS_RUNNING] = "running",
        [VM_STATUS_EXITED] = "exited",
        [VM_STATUS_STOPPING] = "stopping",
        [VM_STATUS_STOPPED] = "stopped",
        [VM_STATUS_REMOVING] = "removing",
};

const char *vm_status_to_string(VmStatus s) {
        return s >= 0 && s < _VM_STATUS_MAX ? vm_status_table[s] : NULL;
}

VmStatus vm_status_from_string(const char *s) {
        for (VmStatus i = 0; s && i < _VM_STATUS_MAX; i++)
                if (streq(vm_status_table[i], s))
                        return i;
        return _VM_STATUS_INVALID;
}

void vm_port_done(VmPort *p) {
        free(p->protocol);
        free(p->host_address);
        *p = (VmPort) {};
}

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

void vm_configuration_done(VmConfiguration *c) {
        free(c->name);
        free(c->image);
        free(c->compose_file);
        free(c->app_id);
        free(c->user_config);
        free(c->encrypted_env);
        for (size_t i = 0; i < c->n_ports; i++)
                vm_port_done(&c->ports[i]);
        free(c->ports);
        strv_free(c->kms_urls);
        strv_free(c->gateway_urls);
        *c = (VmConfiguration) {};
}

void vm_info_done(VmInfo *i) {
        free(i->id);
        free(i->name);
        free(i->uptime);
        free(i->app_url);
        free(i->app_id);
        free(i->instance_id);
        vm_configuration_done(&i->configuration);
        free(i->exited_at);
        free(i->boot_progress);
        free(i->boot_error);
        free(i->shutdown_progress);
        free(i->image_version);
        *i = (VmInfo) { .status = _VM_STATUS_INVALID };
}

void vmm_status_reply_done(VmmStatusReply *r) {
        for (size_t i = 0; i < r->n_vms; i++)
                vm_info_done(&r->vms[i]);
        free(r->vms);
        *r = (VmmStatusReply) {};
}

void vmm_info_reply_done(VmmInfoReply *r) {
        if (r->info)
                vm_info_done(r->info);
        free(r->info);
        *r = (VmmInfoReply) {};
}

void vmm_version_reply_done(VmmVersionReply *r) {
        free(r->version);
        free(r->rev);
        *r = (VmmVersionReply) {};
}

void vmm_images_reply_done(VmmImagesReply *r) {
        for (size_t i = 0; i < r->n_images; i++) {
                free(r->images[i].name);
                free(r->images[i].description);
                free(r->images[i].version);
        }
        free(r->images);
        *r = (VmmImagesReply) {};
}

/* ---- versions ---- */

static int parse_component(const char **p, unsigned *ret) {
        unsigned long v = 0;
        const char *s = *p;
        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (unsigned long) (*s - '0');
                if (v > 999999)
                        return -EINVAL;
        }
        *ret = (unsigned) v;
        *p = s;
        return 0;
}

int vmm_version_parse(const char *s, VmmVersion *ret) {
        VmmVersion v = {};

        if (!s)
                return -EINVAL;
        if (*s == 'v' || *s == 'V')
                s++;
        if (parse_component(&s, &v.major) < 0 || *s++ != '.' || parse_component(&s, &v.minor) < 0)
                return -EINVAL;
        if (*s == '.') {
                s++;
                if (parse_component(&s, &v.patch) < 0)
                        return -EINVAL;
        }
        if (*s != '\0' && *s != '-' && *s != '+' && *s != ' ')
                return -EINVAL;
        *ret = v;
        return 0;
}

int vmm_version_compare(const VmmVersion *a, const VmmVersion *b) {
        if (a->major != b->major)
                return a->major < b->major ? -1 : 1;
        if (a->minor != b->minor)
                return a->minor < b->minor ? -1 : 1;
        if (a->patch != b->patch)
                return a->patch < b->patch ? -1 : 1;
        return 0;
}

bool vmm_version_has_update_vm(const VmmVersion *v) {
        return vmm_version_compare(v, &(VmmVersion) { 0, 5, 6 }) >= 0;
}

bool vmm_version_remove_is_async(const VmmVersion *v) {
        return vmm_version_compare(v, &(VmmVersion) { 0, 5, 7 }) >= 0;
}

/* ---- parsing helpers ---- */

_printf_(2, 3) static int fail(char **err, const char *fmt, ...) {
        va_list ap;

        if (err) {
                free(*err);
                va_start(ap, fmt);
                if (vasprintf(err, fmt, ap) < 0)
                        *err = NULL;
                va_end(ap);
        }
        return -EBADMSG;
}

static const char *node_type(JsonNode *n) {
        if (!n || JSON_NODE_HOLDS_NULL(n))
                return "null";
        if (JSON_NODE_HOLDS_OBJECT(n))
                return "an object";
        if (JSON_NODE_HOLDS_ARRAY(n))
                return "an array";
        switch (json_node_get_value_type(n)) {
        case G_TYPE_STRING:
                return "a string";
        case G_TYPE_BOOLEAN:
                return "a boolean";
        case G_TYPE_INT64:
                return "an integer";
        default:
                return "a number";
        }
}

/* json-glib cuts a string at "\u0000"; such a string would be read as a
 * different value than the VMM meant. */
static bool is_nul_escape(const char *data, size_t len, size_t i) {
        return len - i >= 6 && memcmp(data + i, "\\u0000", 6) == 0;
}

/* Finds deep nesting and NUL escapes before json-glib sees the bytes. */
static const char *scan_problem(const char *data, size_t len) {
        unsigned depth = 0;
        bool in_str = false;

        for (size_t i = 0; i < len; i++) {
                char c = data[i];
                if (in_str) {
                        if (c == '\\' && is_nul_escape(data, len, i))
                                return "a string contains \\u0000";
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_str = false;
                } else if (c == '"')
                        in_str = true;
                else if (c == '[' || c == '{') {
                        if (++depth > JSON_MAX_DEPTH)
                                return "nested deeper than " G_STRINGIFY(JSON_MAX_DEPTH) " levels";
                } else if ((c == ']' || c == '}') && depth > 0)
                        depth--;
        }
        return NULL;
}

/* Parses a whole reply. *ret is NULL for an empty body. */
static int parse_root(const char *what, const char *data, size_t len, JsonNode **ret, char **err) {
        g_autoptr(JsonParser) p = NULL;
        g_autoptr(GError) e = NULL;

        if (len > INT_MAX)
                return fail(err, "%s: reply too large", what);
        if (memchr(data, '\0', len))
                return fail(err, "%s: reply contains a NUL byte", what);
        const char *problem = scan_problem(data, len);
        if (problem)
                return fail(err, "%s: %s", what, problem);
        p = json_parser_new();
        if (!json_parser_load_from_data(p, data, (gssize) len, &e))
                return fail(err, "%s: malformed JSON: %s", what, e->message);
        JsonNode *root = json_parser_get_root(p);
        *ret = root ? json_node_copy(root) : NULL;
        return 0;
}

static int parse_object(const char *what, const char *data, size_t len, JsonNode **ret, char **err) {
        int r = parse_root(what, data, len, ret, err);
        if (r < 0)
                return r;
        if (!*ret || !JSON_NODE_HOLDS_OBJECT(*ret)) {
                r = fail(err, "%s: expected an object, got %s", what, node_type(*ret));
                g_clear_pointer(ret, json_node_unref);
        }
        return r;
}

/* Absent and null both mean "default" in the prpc mapping. */
static JsonNode *member(JsonObject *o, const char *name) {
        JsonNode *n = json_object_get_member(o, name);
        return n && !JSON_NODE_HOLDS_NULL(n) ? n : NULL;
}

static bool holds(JsonNode *n, GType t) {
        return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == t;
}

typedef enum { OPTIONAL, REQUIRED } Need;

static int get_str(JsonObject *o, const char *path, const char *name, Need need, char **ret, char **err) {
        JsonNode *n = member(o, name);

        if (!n)
                return need == REQUIRED ? fail(err, "%s.%s: missing", path, name) : 0;
        if (!holds(n, G_TYPE_STRING))
                return fail(err, "%s.%s: expected a string, got %s", path, name, node_type(n));
        const char *s = json_node_get_string(n);
        if (need == REQUIRED && isempty(s))
                return fail(err, "%s.%s: empty", path, name);
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int get_u64(JsonObject *o, const char *path, const char *name, uint64_t max, uint64_t *ret, char **err) {
        JsonNode *n = member(o, name);

        if (!n)
                return 0;
        if (!holds(n, G_TYPE_INT64))
                return fail(err, "%s.%s: expected an integer, got %s", path, name, node_type(n));
        gint64 v = json_node_get_int(n);
        if (v < 0 || (uint64_t) v > max)
                return fail(err, "%s.%s: %" G_GINT64_FORMAT " out of range 0..%" G_GUINT64_FORMAT,
                            path, name, v, (guint64) max);
        *ret = (uint64_t) v;
        return 0;
}

static int get_u32(JsonObject *o, const char *path, const char *name, uint32_t max, uint32_t *ret, char **err) {
        uint64_t v = *ret;
        int r = get_u64(o, path, name, max, &v, err);
        if (r >= 0)
                *ret = (uint32_t) v;
        return r;
}

static int get_bool(JsonObject *o, const char *path, const char *name, bool *ret, char **err) {
        JsonNode *n = member(o, name);

        if (!n)
                return 0;
        if (!holds(n, G_TYPE_BOOLEAN))
                return fail(err, "%s.%s: expected a boolean, got %s", path, name, node_type(n));
        *ret = json_node_get_boolean(n);
        return 0;
}

static int get_array(JsonObject *o, const char *path, const char *name, JsonArray **ret, char **err) {
        JsonNode *n = member(o, name);

        *ret = NULL;
        if (!n)
                return 0;
        if (!JSON_NODE_HOLDS_ARRAY(n))
                return fail(err, "%s.%s: expected an array, got %s", path, name, node_type(n));
        *ret = json_node_get_array(n);
        return 0;
}

static int get_object(JsonObject *o, const char *path, const char *name, JsonObject **ret, char **err) {
        JsonNode *n = member(o, name);

        *ret = NULL;
        if (!n)
                return 0;
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return fail(err, "%s.%s: expected an object, got %s", path, name, node_type(n));
        *ret = json_node_get_object(n);
        return 0;
}

static int get_hex(JsonObject *o, const char *path, const char *name, uint8_t **ret, size_t *ret_len, char **err) {
        _cleanup_free_ char *s = NULL;
        int r = get_str(o, path, name, OPTIONAL, &s, err);
        if (r < 0 || !s)
                return r;
        r = hex_decode(s, ret, ret_len);
        if (r == -EINVAL)
                return fail(err, "%s.%s: not hex", path, name);
        return r;
}

static int get_hex_exact(JsonObject *o, const char *path, const char *name, Need need,
                         uint8_t *buf, size_t n, bool *ret_has, char **err) {
        _cleanup_free_ char *s = NULL;
        int r = get_str(o, path, name, need, &s, err);
        if (r < 0 || !s)
                return r;
        if (hex_decode_exact(s, buf, n) < 0)
                return fail(err, "%s.%s: expected %zu bytes of hex", path, name, n);
        if (ret_has)
                *ret_has = true;
        return 0;
}

/* A KMS signature: 65 bytes of hex, or absent. A ≥0.5.6 VMM copies every
 * field of the KMS reply, so an older KMS's missing signature arrives as ""
 * (proto3 default): that is absent too, not malformed (issue 7, defect 4).
 * Any other string that is not one is a malformed signature (issue 18). */
static int get_signature(JsonObject *o, const char *path, const char *name, uint8_t sig[static 65],
                         bool *ret_has, bool *ret_malformed, char **err) {
        _cleanup_free_ char *s = NULL;
        int r = get_str(o, path, name, OPTIONAL, &s, err);
        if (r < 0 || !s || s[0] == '\0')
                return r;
        *ret_has = true;
        *ret_malformed = kms_signature_parse(s, sig, NULL) < 0;
        return 0;
}

/* A value echoed in an error message: bounded and printable. */
static char *quote_value(const char *s) {
        g_autofree char *cut = g_strndup(s, 64);
        g_autofree char *esc = g_strescape(cut, NULL);
        return strdup(esc);
}

static int get_strv(JsonObject *o, const char *path, const char *name, char ***ret, char **err) {
        JsonArray *a;
        int r = get_array(o, path, name, &a, err);
        if (r < 0 || !a)
                return r;
        size_t n = json_array_get_length(a);
        char **l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        *ret = l;
        for (size_t i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, (guint) i);
                if (!holds(e, G_TYPE_STRING))
                        return fail(err, "%s.%s[%zu]: expected a string, got %s", path, name, i, node_type(e));
                l[i] = strdup(json_node_get_string(e));
                if (!l[i])
                        return -ENOMEM;
        }
        return 0;
}

/* ---- typed replies ---- */

static int parse_port(JsonNode *n, const char *path, VmPort *p, char **err) {
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return fail(err, "%s: expected an object, got %s", path, node_type(n));
        JsonObject *o = json_node_get_object(n);
        int r;

        if ((r = get_str(o, path, "protocol", REQUIRED, &p->protocol, err)) < 0 ||
            (r = get_u32(o, path, "host_port", 65535, &p->host_port, err)) < 0 ||
            (r = get_u32(o, path, "vm_port", 65535, &p->vm_port, err)) < 0 ||
            (r = get_str(o, path, "host_address", OPTIONAL, &p->host_address, err)) < 0)
                return r;
        if (!streq(p->protocol, "tcp") && !streq(p->protocol, "udp")) {
                _cleanup_free_ char *q = quote_value(p->protocol);
                return fail(err, "%s.protocol: unknown value '%s'", path, strempty(q));
        }
        if (!p->host_address && !(p->host_address = strdup("")))
                return -ENOMEM;
        return 0;
}

static int parse_ports(JsonObject *o, const char *path, VmConfiguration *c, char **err) {
        JsonArray *a;
        int r = get_array(o, path, "ports", &a, err);
        if (r < 0 || !a)
                return r;
        size_t n = json_array_get_length(a);
        c->ports = calloc(n ?: 1, sizeof(VmPort));
        if (!c->ports)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s.ports[%zu]", path, i) < 0)
                        return -ENOMEM;
                c->n_ports = i + 1;
                r = parse_port(json_array_get_element(a, (guint) i), p, &c->ports[i], err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_configuration(JsonObject *o, const char *path, VmConfiguration *c, char **err) {
        int r;

        if ((r = get_str(o, path, "name", OPTIONAL, &c->name, err)) < 0 ||
            (r = get_str(o, path, "image", OPTIONAL, &c->image, err)) < 0 ||
            (r = get_str(o, path, "compose_file", OPTIONAL, &c->compose_file, err)) < 0 ||
            (r = get_str(o, path, "app_id", OPTIONAL, &c->app_id, err)) < 0 ||
            (r = get_str(o, path, "user_config", OPTIONAL, &c->user_config, err)) < 0 ||
            (r = get_hex(o, path, "encrypted_env", &c->encrypted_env, &c->encrypted_env_len, err)) < 0 ||
            (r = get_u32(o, path, "vcpu", UINT32_MAX, &c->vcpu, err)) < 0 ||
            (r = get_u32(o, path, "memory", UINT32_MAX, &c->memory, err)) < 0 ||
            (r = get_u32(o, path, "disk_size", UINT32_MAX, &c->disk_size, err)) < 0 ||
            (r = parse_ports(o, path, c, err)) < 0 ||
            (r = get_bool(o, path, "hugepages", &c->hugepages, err)) < 0 ||
            (r = get_bool(o, path, "pin_numa", &c->pin_numa, err)) < 0 ||
            (r = get_bool(o, path, "stopped", &c->stopped, err)) < 0 ||
            (r = get_strv(o, path, "kms_urls", &c->kms_urls, err)) < 0 ||
            (r = get_strv(o, path, "gateway_urls", &c->gateway_urls, err)) < 0)
                return r;
        return 0;
}

static int parse_vm_status(JsonObject *o, const char *path, VmInfo *i, char **err) {
        _cleanup_free_ char *s = NULL;
        int r = get_str(o, path, "status", REQUIRED, &s, err);
        if (r < 0)
                return r;
        i->status = vm_status_from_string(s);
        if (i->status < 0) {
                _cleanup_free_ char *q = quote_value(s);
                return fail(err, "%s.status: unknown value '%s'", path, strempty(q));
        }
        return 0;
}

static int parse_vm_info_fields(JsonObject *o, const char *path, VmInfo *i, char **err) {
        _cleanup_free_ char *cpath = NULL;
        JsonObject *conf;
        int r;

        if ((r = get_str(o, path, "id", REQUIRED, &i->id, err)) < 0 ||
            (r = get_str(o, path, "name", OPTIONAL, &i->name, err)) < 0 ||
            (r = parse_vm_status(o, path, i, err)) < 0 ||
            (r = get_str(o, path, "uptime", OPTIONAL, &i->uptime, err)) < 0 ||
            (r = get_str(o, path, "app_url", OPTIONAL, &i->app_url, err)) < 0 ||
            (r = get_str(o, path, "app_id", OPTIONAL, &i->app_id, err)) < 0 ||
            (r = get_str(o, path, "instance_id", OPTIONAL, &i->instance_id, err)) < 0 ||
            (r = get_str(o, path, "exited_at", OPTIONAL, &i->exited_at, err)) < 0 ||
            (r = get_str(o, path, "boot_progress", OPTIONAL, &i->boot_progress, err)) < 0 ||
            (r = get_str(o, path, "boot_error", OPTIONAL, &i->boot_error, err)) < 0 ||
            (r = get_str(o, path, "shutdown_progress", OPTIONAL, &i->shutdown_progress, err)) < 0 ||
            (r = get_str(o, path, "image_version", OPTIONAL, &i->image_version, err)) < 0 ||
            (r = get_object(o, path, "configuration", &conf, err)) < 0)
                return r;
        if (!conf)
                return 0;
        if (asprintf(&cpath, "%s.configuration", path) < 0)
                return -ENOMEM;
        i->has_configuration = true;
        return parse_configuration(conf, cpath, &i->configuration, err);
}

static int parse_vm_info(JsonNode *n, const char *path, VmInfo *ret, char **err) {
        *ret = (VmInfo) { .status = _VM_STATUS_INVALID };
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return fail(err, "%s: expected an object, got %s", path, node_type(n));
        int r = parse_vm_info_fields(json_node_get_object(n), path, ret, err);
        if (r < 0)
                vm_info_done(ret);
        return r;
}

int vmm_parse_status_reply(const char *data, size_t len, VmmStatusReply *ret, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        VmmStatusReply s = {};
        JsonArray *a;
        int r;

        r = parse_object("Status", data, len, &root, ret_error);
        if (r < 0)
                return r;
        JsonObject *o = json_node_get_object(root);
        if ((r = get_bool(o, "Status", "port_mapping_enabled", &s.port_mapping_enabled, ret_error)) < 0 ||
            (r = get_u64(o, "Status", "total", UINT32_MAX, &s.total, ret_error)) < 0 ||
            (r = get_array(o, "Status", "vms", &a, ret_error)) < 0)
                return r;
        size_t n = a ? json_array_get_length(a) : 0;
        s.vms = calloc(n ?: 1, sizeof(VmInfo));
        if (!s.vms)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char path[64];
                snprintf(path, sizeof path, "Status.vms[%zu]", i);
                r = parse_vm_info(json_array_get_element(a, (guint) i), path, &s.vms[i], ret_error);
                if (r < 0) {
                        vmm_status_reply_done(&s);
                        return r;
                }
                s.n_vms = i + 1;
        }
        *ret = s;
        return 0;
}

int vmm_parse_info_reply(const char *data, size_t len, VmmInfoReply *ret, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        VmmInfoReply g = {};
        int r;

        r = parse_object("GetInfo", data, len, &root, ret_error);
        if (r < 0)
                return r;
        JsonObject *o = json_node_get_object(root);
        r = get_bool(o, "GetInfo", "found", &g.found, ret_error);
        if (r < 0)
                return r;
        JsonNode *info = member(o, "info");
        if (g.found && !info)
                return fail(ret_error, "GetInfo.info: missing although found is true");
        if (g.found) {
                g.info = malloc(sizeof(VmInfo));
                if (!g.info)
                        return -ENOMEM;
                r = parse_vm_info(info, "GetInfo.info", g.info, ret_error);
                if (r < 0) {
                        free(g.info);
                        return r;
                }
        }
        *ret = g;
        return 0;
}

#define ERROR_TEXT_MAX 1024

/* One line of valid UTF-8 for the bus and a terminal: a byte that is not
 * UTF-8 becomes U+FFFD, a control character (C0, DEL, C1: U+009B is CSI to
 * some terminals) '?', a line break a space; at most ERROR_TEXT_MAX bytes,
 * cut at a character. */
static char *error_text(const char *s, size_t len) {
        return text_sanitize(s, strnlen(s, MIN(len, 4 * ERROR_TEXT_MAX)), ERROR_TEXT_MAX,
                             TEXT_ONE_LINE | TEXT_NO_ELLIPSIS | TEXT_STRIP);
}

int vmm_parse_error_reply(const char *data, size_t len, char **ret_message) {
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;

        if (parse_root("error", data, len, &root, NULL) >= 0 && root && JSON_NODE_HOLDS_OBJECT(root)) {
                JsonNode *n = member(json_node_get_object(root), "error");
                if (n && holds(n, G_TYPE_STRING))
                        text = error_text(json_node_get_string(n), SIZE_MAX);
        }
        if (!text) /* not the prpc shape: the body itself */
                text = error_text(data, len);
        *ret_message = strdup(text);
        return *ret_message ? 0 : -ENOMEM;
}

int vmm_parse_empty_reply(const char *method, const char *data, size_t len, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        int r = parse_root(method, data, len, &root, ret_error);
        if (r < 0)
                return r;
        /* Empty is "null"; tolerate an empty body or an object. */
        if (root && !JSON_NODE_HOLDS_NULL(root) && !JSON_NODE_HOLDS_OBJECT(root))
                return fail(ret_error, "%s: expected null, got %s", method, node_type(root));
        return 0;
}

int vmm_parse_id_reply(const char *method, const char *data, size_t len, char **ret_id, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        int r = parse_object(method, data, len, &root, ret_error);
        if (r < 0)
                return r;
        return get_str(json_node_get_object(root), method, "id", REQUIRED, ret_id, ret_error);
}

int vmm_parse_update_reply(const char *method, const char *data, size_t len, char **ret_compose_app_id,
                           char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        int r = parse_root(method, data, len, &root, ret_error);
        if (r < 0)
                return r;
        *ret_compose_app_id = NULL;
        /* null (or an empty body): nothing to report. */
        if (!root || JSON_NODE_HOLDS_NULL(root))
                return 0;
        if (!JSON_NODE_HOLDS_OBJECT(root))
                return fail(ret_error, "%s: expected an object or null, got %s", method, node_type(root));
        /* {"id": app_id_of(the compose just sent)} or {"id": ""} when none was
         * sent (main_service.rs update_vm). Not the VM's app id and not needed
         * by anyone: missing, "" or not a string are all "none". */
        JsonNode *n = member(json_node_get_object(root), "id");
        if (!n || !holds(n, G_TYPE_STRING) || isempty(json_node_get_string(n)))
                return 0;
        *ret_compose_app_id = strdup(json_node_get_string(n));
        return *ret_compose_app_id ? 0 : -ENOMEM;
}

static bool is_lower_hex(const char *s, size_t n) {
        if (strlen(s) != n)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

int vmm_parse_compose_hash_reply(const char *data, size_t len, char **ret_hash, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        _cleanup_free_ char *h = NULL;
        int r = parse_object("GetComposeHash", data, len, &root, ret_error);
        if (r < 0)
                return r;
        r = get_str(json_node_get_object(root), "GetComposeHash", "hash", REQUIRED, &h, ret_error);
        if (r < 0)
                return r;
        if (!is_lower_hex(h, 64))
                return fail(ret_error, "GetComposeHash.hash: expected 64 lowercase hex digits");
        *ret_hash = TAKE_PTR(h);
        return 0;
}

int vmm_parse_pubkey_reply(const char *data, size_t len, VmmPubKeyReply *ret, char **ret_error) {
        static const char m[] = "GetAppEnvEncryptPubKey";
        g_autoptr(JsonNode) root = NULL;
        VmmPubKeyReply k = {};
        int r = parse_object(m, data, len, &root, ret_error);
        if (r < 0)
                return r;
        JsonObject *o = json_node_get_object(root);
        if ((r = get_hex_exact(o, m, "public_key", REQUIRED, k.public_key, 32, NULL, ret_error)) < 0 ||
            (r = get_signature(o, m, "signature", k.signature, &k.has_signature, &k.signature_malformed,
                               ret_error)) < 0 ||
            (r = get_signature(o, m, "signature_v1", k.signature_v1, &k.has_signature_v1,
                               &k.signature_v1_malformed, ret_error)) < 0 ||
            (r = get_u64(o, m, "timestamp", INT64_MAX, &k.timestamp, ret_error)) < 0)
                return r;
        /* 0 is proto3's default: what a ≥0.5.6 VMM sends for a KMS without one. */
        k.has_timestamp = k.timestamp != 0;
        *ret = k;
        return 0;
}

int vmm_parse_version_reply(const char *data, size_t len, VmmVersionReply *ret, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        VmmVersionReply v = {};
        int r = parse_object("Version", data, len, &root, ret_error);
        if (r < 0)
                return r;
        JsonObject *o = json_node_get_object(root);
        if ((r = get_str(o, "Version", "version", REQUIRED, &v.version, ret_error)) < 0 ||
            (r = get_str(o, "Version", "rev", OPTIONAL, &v.rev, ret_error)) < 0) {
                vmm_version_reply_done(&v);
                return r;
        }
        *ret = v;
        return 0;
}

int vmm_parse_meta_reply(const char *data, size_t len, VmmMetaReply *ret, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        VmmMetaReply m = {};
        JsonObject *res;
        int r = parse_object("GetMeta", data, len, &root, ret_error);
        if (r < 0)
                return r;
        r = get_object(json_node_get_object(root), "GetMeta", "resources", &res, ret_error);
        if (r < 0)
                return r;
        if (res &&
            ((r = get_u32(res, "GetMeta.resources", "max_cvm_number", UINT32_MAX, &m.max_cvm_number, ret_error)) < 0 ||
             (r = get_u32(res, "GetMeta.resources", "max_allocable_vcpu", UINT32_MAX, &m.max_allocable_vcpu, ret_error)) < 0 ||
             (r = get_u32(res, "GetMeta.resources", "max_allocable_memory_in_mb", UINT32_MAX,
                          &m.max_allocable_memory_in_mb, ret_error)) < 0))
                return r;
        *ret = m;
        return 0;
}

static int parse_image(JsonNode *n, const char *path, VmmImage *img, char **err) {
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return fail(err, "%s: expected an object, got %s", path, node_type(n));
        JsonObject *o = json_node_get_object(n);
        int r;
        if ((r = get_str(o, path, "name", REQUIRED, &img->name, err)) < 0 ||
            (r = get_str(o, path, "description", OPTIONAL, &img->description, err)) < 0 ||
            (r = get_str(o, path, "version", OPTIONAL, &img->version, err)) < 0 ||
            (r = get_bool(o, path, "is_dev", &img->is_dev, err)) < 0)
                return r;
        return 0;
}

int vmm_parse_images_reply(const char *data, size_t len, VmmImagesReply *ret, char **ret_error) {
        g_autoptr(JsonNode) root = NULL;
        VmmImagesReply l = {};
        JsonArray *a;
        int r = parse_object("ListImages", data, len, &root, ret_error);
        if (r < 0)
                return r;
        r = get_array(json_node_get_object(root), "ListImages", "images", &a, ret_error);
        if (r < 0)
                return r;
        size_t n = a ? json_array_get_length(a) : 0;
        l.images = calloc(n ?: 1, sizeof(VmmImage));
        if (!l.images)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char path[64];
                snprintf(path, sizeof path, "ListImages.images[%zu]", i);
                l.n_images = i + 1;
                r = parse_image(json_array_get_element(a, (guint) i), path, &l.images[i], ret_error);
                if (r < 0) {
                        vmm_images_reply_done(&l);
                        return r;
                }
        }
        *ret = l;
        return 0;
}

/* At a[i] (a quote) begins "uptime":" or "exited_at":" (serde's compact
 * output): the offset just past the opening quote of the value, else 0. */
static size_t clock_member_value(const char *a, size_t n, size_t i) {
        static const char uptime[] = "\"uptime\":\"", exited_at[] = "\"exited_at\":\"";
        if (n - i > 1 && a[i + 1] == 'u' && n - i >= sizeof uptime - 1 &&
            memcmp(a + i, uptime, sizeof uptime - 1) == 0)
                return i + sizeof uptime - 1;
        if (n - i > 1 && a[i + 1] == 'e' && n - i >= sizeof exited_at - 1 &&
            memcmp(a + i, exited_at, sizeof exited_at - 1) == 0)
                return i + sizeof exited_at - 1;
        return 0;
}

/* The end of a string value that began at i (the closing quote's offset), n if none. */
static size_t string_end(const char *a, size_t n, size_t i) {
        for (; i < n; i++) {
                if (a[i] == '\\')
                        i++;
                else if (a[i] == '"')
                        return i;
        }
        return n;
}

bool vmm_status_bodies_same(const char *a, size_t na, const char *b, size_t nb) {
        size_t i = 0, j = 0;
        while (i < na && j < nb) {
                /* The bytes up to the next quote are compared whole (a poll's
                 * Status is mostly the same text), then what the quote begins. */
                const char *q = memchr(a + i, '"', na - i);
                size_t run = (q ? (size_t) (q - a) : na) - i;
                if (nb - j < run || memcmp(a + i, b + j, run) != 0)
                        return false;
                i += run, j += run;
                if (i == na || j == nb)
                        break;
                if (b[j] != '"')
                        return false;
                size_t vi = clock_member_value(a, na, i);
                size_t vj = vi ? clock_member_value(b, nb, j) : 0;
                if (vi && vj && vi - i == vj - j) {
                        i = string_end(a, na, vi);
                        j = string_end(b, nb, vj);
                        continue; /* both at their closing quote, compared next */
                }
                i++, j++; /* past the quote */
        }
        return i == na && j == nb;
}
