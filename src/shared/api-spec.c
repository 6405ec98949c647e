/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "shared/api-spec.h"
#include "shared/json-load.h"
#include "shared/macro.h"
#include "shared/strv.h"
#include "shared/validate.h"

#define API_DESCRIPTION_MAX (64 * 1024)
#define API_USER_CONFIG_MAX (64 * 1024)

/* One JSON object being read, and where its fields are reported. */
typedef struct Scope {
        JsonObject *obj;
        const char *path;       /* "" at the root */
        char **error;
} Scope;

enum {
        F_REQUIRED = 1 << 0,    /* absent is an error, else the default applies */
        F_NULLABLE = 1 << 1,    /* null means the default */
        F_NONEMPTY = 1 << 2,
};

const char *port_protocol_to_string(PortProtocol p) {
        return p == PORT_PROTOCOL_UDP ? "udp" : "tcp";
}

_printf_(3, 4)
static int fail(const Scope *s, const char *name, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (!s->error)
                return -EINVAL;
        if (asprintf(s->error, "%s%s%s: %s", s->path, s->path[0] ? "." : "", name, msg) < 0) {
                *s->error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* The member, or NULL when absent (or null and nullable). */
static int lookup(const Scope *s, const char *name, int flags, JsonNode **ret) {
        JsonNode *n = json_object_get_member(s->obj, name);
        if (n && JSON_NODE_HOLDS_NULL(n) && (flags & F_NULLABLE))
                n = NULL;
        if (!n && (flags & F_REQUIRED))
                return fail(s, name, "is required");
        *ret = n;
        return 0;
}

typedef bool (*StringCheck)(const char *s);

static int get_string(const Scope *s, const char *name, int flags, size_t max,
                      StringCheck check, const char *what, const char *def, char **ret) {
        JsonNode *n = NULL;
        int r = lookup(s, name, flags, &n);
        if (r < 0)
                return r;
        const char *v = def;
        if (n) {
                if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                        return fail(s, name, "must be a string");
                v = json_node_get_string(n);
                size_t len = strlen(v);
                if (len > max)
                        return fail(s, name, "must be at most %zu bytes", max);
                if (!g_utf8_validate_len(v, len, NULL))
                        return fail(s, name, "must be valid UTF-8");
                if (len == 0 && (flags & F_NONEMPTY))
                        return fail(s, name, "must not be empty");
                if (check && !check(v))
                        return fail(s, name, "must be %s", what);
        }
        if (!v) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

static int get_int(const Scope *s, const char *name, int flags, int64_t min, int64_t max,
                   int64_t def, int64_t *ret) {
        JsonNode *n = NULL;
        int r = lookup(s, name, flags, &n);
        if (r < 0)
                return r;
        if (!n) {
                *ret = def;
                return 0;
        }
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
            json_node_get_int(n) < min || json_node_get_int(n) > max)
                return fail(s, name, "must be an integer between %" G_GINT64_FORMAT
                            " and %" G_GINT64_FORMAT, min, max);
        *ret = json_node_get_int(n);
        return 0;
}

static int get_bool(const Scope *s, const char *name, int flags, bool *ret) {
        JsonNode *n = NULL;
        int r = lookup(s, name, flags, &n);
        if (r < 0)
                return r;
        if (!n) {
                *ret = false;
                return 0;
        }
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
                return fail(s, name, "must be a boolean");
        *ret = json_node_get_boolean(n);
        return 0;
}

static int get_object(const Scope *s, const char *name, char *path, size_t pathsz, Scope *ret) {
        JsonNode *n = NULL;
        int r = lookup(s, name, F_REQUIRED, &n);
        if (r < 0)
                return r;
        if (!JSON_NODE_HOLDS_OBJECT(n))
                return fail(s, name, "must be an object");
        snprintf(path, pathsz, "%s%s%s", s->path, s->path[0] ? "." : "", name);
        *ret = (Scope) { .obj = json_node_get_object(n), .path = path, .error = s->error };
        return 0;
}

/* An optional array (absent or null = empty) of at most max elements. */
static int get_array(const Scope *s, const char *name, size_t max, JsonArray **ret) {
        JsonNode *n = NULL;
        int r = lookup(s, name, F_NULLABLE, &n);
        if (r < 0)
                return r;
        *ret = NULL;
        if (!n)
                return 0;
        if (!JSON_NODE_HOLDS_ARRAY(n))
                return fail(s, name, "must be an array");
        if (json_array_get_length(json_node_get_array(n)) > max)
                return fail(s, name, "must have at most %zu elements", max);
        *ret = json_node_get_array(n);
        return 0;
}

static int get_env_keys(const Scope *s, const char *name, char ***ret) {
        JsonArray *a;
        int r = get_array(s, name, API_MAX_ENV_KEYS, &a);
        if (r < 0)
                return r;
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                char elem[64];
                snprintf(elem, sizeof elem, "%s[%u]", name, i);
                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING ||
                    !env_key_is_valid(json_node_get_string(e)))
                        return fail(s, elem, "must be an environment variable name "
                                    "(^[A-Za-z_][A-Za-z0-9_]*$, at most %d bytes)", ENV_KEY_MAX);
                if (strv_extend(&l, json_node_get_string(e)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* An image or runner label: what dstack puts in a path or a command line. */
static bool label_is_safe(const char *v) {
        if (!g_ascii_isalnum(v[0]) || strlen(v) > 128)
                return false;
        for (const char *p = v; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr("._-", *p))
                        return false;
        return true;
}

static bool hex_is_even(const char *v) {
        size_t n = strlen(v);
        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isxdigit(v[i]))
                        return false;
        return n % 2 == 0;
}

static bool host_address_ok(const char *v) {
        for (const char *p = v; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr(".:-", *p))
                        return false;
        return true;
}

static bool printable_ascii(const char *v) {
        for (const char *p = v; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

static bool protocol_ok(const char *v) {
        return streq(v, "tcp") || streq(v, "udp");
}

static bool vm_type_ok(const char *v) {
        return streq(v, "validator_vm");
}

static int parse_manifest(const Scope *s, PlatformManifestDefaults *m) {
        struct {
                const char *name;
                bool *field;
        } bools[] = {
                { "kms_enabled", &m->kms_enabled },
                { "gateway_enabled", &m->gateway_enabled },
                { "local_key_provider_enabled", &m->local_key_provider_enabled },
                { "public_logs", &m->public_logs },
                { "public_sysinfo", &m->public_sysinfo },
                { "public_tcbinfo", &m->public_tcbinfo },
                { "no_instance_id", &m->no_instance_id },
                { "secure_time", &m->secure_time },
        };
        int r;

        /* All required: a guessed default would change the compose hash. */
        if ((r = get_int(s, "manifest_version", F_REQUIRED, 1, INT32_MAX, 0, &m->manifest_version)) < 0 ||
            (r = get_string(s, "name", F_REQUIRED, 63, vm_name_is_valid,
                            "a label of ASCII alphanumerics and \"-_. @~!$^()\"", NULL, &m->name)) < 0 ||
            (r = get_string(s, "runner", F_REQUIRED, 128, label_is_safe,
                            "a label of ASCII alphanumerics and \"._-\"", NULL, &m->runner)) < 0 ||
            (r = get_string(s, "key_provider_id", F_REQUIRED, 128, hex_is_even,
                            "hex (may be empty)", NULL, &m->key_provider_id)) < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(bools); i++)
                if ((r = get_bool(s, bools[i].name, F_REQUIRED, bools[i].field)) < 0)
                        return r;
        return 0;
}

static int parse_port(const Scope *s, PlatformPort *p) {
        _cleanup_free_ char *proto = NULL;
        int64_t host_port, vm_port;
        int r;

        if ((r = get_string(s, "protocol", F_REQUIRED, 16, protocol_ok, "\"tcp\" or \"udp\"",
                            NULL, &proto)) < 0 ||
            (r = get_int(s, "host_port", F_REQUIRED, 0, 65535, 0, &host_port)) < 0 ||
            (r = get_int(s, "vm_port", F_REQUIRED, 0, 65535, 0, &vm_port)) < 0 ||
            /* null is what the API sends; the VMM wants "" for "default". */
            (r = get_string(s, "host_address", F_NULLABLE, 255, host_address_ok,
                            "an address of ASCII alphanumerics and \".:-\"", "", &p->host_address)) < 0)
                return r;
        p->protocol = streq(proto, "udp") ? PORT_PROTOCOL_UDP : PORT_PROTOCOL_TCP;
        p->host_port = (uint16_t) host_port;
        p->vm_port = (uint16_t) vm_port;
        return 0;
}

static int parse_ports(const Scope *s, PlatformVmParameters *vm) {
        JsonArray *a;
        int r = get_array(s, "ports", API_MAX_PORTS, &a);
        if (r < 0 || !a)
                return r;
        size_t n = json_array_get_length(a);
        vm->ports = calloc(n ? n : 1, sizeof(PlatformPort));
        if (!vm->ports)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, (guint) i);
                char path[160], elem[32];
                snprintf(elem, sizeof elem, "ports[%zu]", i);
                if (!JSON_NODE_HOLDS_OBJECT(e))
                        return fail(s, elem, "must be an object");
                snprintf(path, sizeof path, "%s.%s", s->path, elem);
                Scope ps = { .obj = json_node_get_object(e), .path = path, .error = s->error };
                vm->n_ports = i + 1; /* so that free() sees a partly filled entry */
                if ((r = parse_port(&ps, &vm->ports[i])) < 0)
                        return r;
        }
        return 0;
}

static int parse_vm_parameters(const Scope *s, PlatformVmParameters *vm) {
        int64_t vcpu, memory, disk;
        int r;

        if ((r = get_string(s, "name", F_REQUIRED, 63, vm_name_is_valid,
                            "a label of ASCII alphanumerics and \"-_. @~!$^()\"", NULL, &vm->name)) < 0 ||
            (r = get_string(s, "image", F_REQUIRED, 128, label_is_safe,
                            "a label of ASCII alphanumerics and \"._-\"", NULL, &vm->image)) < 0 ||
            (r = get_int(s, "vcpu", F_REQUIRED, API_VCPU_MIN, API_VCPU_MAX, 0, &vcpu)) < 0 ||
            (r = get_int(s, "memory", F_REQUIRED, API_MEMORY_MB_MIN, API_MEMORY_MB_MAX, 0, &memory)) < 0 ||
            (r = get_int(s, "disk_size", F_REQUIRED, API_DISK_GB_MIN, API_DISK_GB_MAX, 0, &disk)) < 0 ||
            (r = get_string(s, "user_config", F_NULLABLE, API_USER_CONFIG_MAX, NULL, NULL, "",
                            &vm->user_config)) < 0 ||
            (r = get_bool(s, "hugepages", F_NULLABLE, &vm->hugepages)) < 0 ||
            (r = get_bool(s, "pin_numa", F_NULLABLE, &vm->pin_numa)) < 0 ||
            (r = get_bool(s, "stopped", F_NULLABLE, &vm->stopped)) < 0 ||
            (r = parse_ports(s, vm)) < 0)
                return r;
        vm->vcpu = (uint32_t) vcpu;
        vm->memory_mb = (uint32_t) memory;
        vm->disk_size_gb = (uint32_t) disk;
        return 0;
}

static int parse_spec(const Scope *root, PlatformVmSpec *spec) {
        _cleanup_free_ char *vm_type = NULL;
        char prov_path[32], manifest_path[64], params_path[64];
        Scope prov, manifest, params;
        int r;

        if ((r = get_string(root, "vm_type", 0, 64, vm_type_ok, "\"validator_vm\"", NULL, &vm_type)) < 0 ||
            (r = get_string(root, "compose_content", F_REQUIRED | F_NONEMPTY, API_COMPOSE_MAX, NULL, NULL,
                            NULL, &spec->compose_content)) < 0 ||
            (r = get_string(root, "description", F_NULLABLE, API_DESCRIPTION_MAX, NULL, NULL, NULL,
                            &spec->description)) < 0 ||
            (r = get_string(root, "updated_at", F_NULLABLE, 64, printable_ascii, "printable ASCII",
                            NULL, &spec->updated_at)) < 0 ||
            (r = get_env_keys(root, "required_env", &spec->required_env)) < 0 ||
            (r = get_object(root, "provisioning", prov_path, sizeof prov_path, &prov)) < 0 ||
            (r = get_env_keys(&prov, "env_keys", &spec->env_keys)) < 0 ||
            (r = get_object(&prov, "manifest_defaults", manifest_path, sizeof manifest_path, &manifest)) < 0 ||
            (r = parse_manifest(&manifest, &spec->manifest)) < 0 ||
            (r = get_object(&prov, "vm_parameters", params_path, sizeof params_path, &params)) < 0 ||
            (r = parse_vm_parameters(&params, &spec->vm)) < 0)
                return r;
        return 0;
}

int platform_vm_spec_parse(const char *data, size_t len, PlatformVmSpec **ret, char **ret_error) {
        g_autoptr(JsonParser) parser = NULL;
        Scope root = { .path = "", .error = ret_error };
        int r;

        if (ret_error)
                *ret_error = NULL;
        r = json_load_object(data, len, API_DOC_MAX, "document", &parser, &root.obj, ret_error);
        if (r < 0)
                return r;
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = calloc(1, sizeof(PlatformVmSpec));
        if (!spec)
                return -ENOMEM;
        r = parse_spec(&root, spec);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(spec);
        return 0;
}

PlatformVmSpec *platform_vm_spec_free(PlatformVmSpec *s) {
        if (!s)
                return NULL;
        free(s->compose_content);
        free(s->description);
        strv_free(s->required_env);
        free(s->updated_at);
        strv_free(s->env_keys);
        free(s->manifest.name);
        free(s->manifest.runner);
        free(s->manifest.key_provider_id);
        free(s->vm.name);
        free(s->vm.image);
        free(s->vm.user_config);
        for (size_t i = 0; i < s->vm.n_ports; i++)
                free(s->vm.ports[i].host_address);
        free(s->vm.ports);
        free(s);
        return NULL;
}
