/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for the pure layer: exposes compose, the JSON writer and env
 * encryption to the Python property tests. Batch subcommands read records
 * "<decimal length>\n<bytes>" from stdin and answer one line per record, so
 * thousands of cases cost one process. Not installed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "shared/api-spec.h"
#include "shared/compose.h"
#include "shared/crypto.h"
#include "shared/hex.h"
#include "shared/json-out.h"
#include "shared/macro.h"
#include "shared/strv.h"

typedef int (*RecordFn)(const char *data, size_t len, const char *arg);

static char *read_all(FILE *f, size_t *ret_len) {
        size_t n = 0, cap = 65536;
        char *buf = malloc(cap);
        for (size_t k; buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
                n += k;
                if (cap - n < 2) {
                        char *b = realloc(buf, cap *= 2);
                        if (!b)
                                free(buf);
                        buf = b;
                }
        }
        if (buf)
                buf[n] = '\0';
        *ret_len = n;
        return buf;
}

static void print_error(const char *what, int r, const char *msg) {
        printf("error: %s: %s\n", what, msg ? msg : strerror(-r));
}

static int do_compose(const char *data, size_t len, const char *arg) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = NULL;
        _cleanup_free_ char *err = NULL, *out = NULL;
        size_t n;
        int r = platform_vm_spec_parse(data, len, &spec, &err);
        if (r < 0) {
                print_error("api", r, err);
                return 0;
        }
        r = compose_build(spec, &out, &n);
        if (r < 0) {
                print_error("compose", r, NULL);
                return 0;
        }
        if (arg && streq(arg, "--hash")) {
                char hash[COMPOSE_HASH_HEX_LEN + 1], app_id[APP_ID_HEX_LEN + 1];
                if (compose_hash(out, n, hash) < 0)
                        return -EIO;
                compose_app_id(hash, app_id);
                printf("compose_hash %s\napp_id %s\n", hash, app_id);
        } else {
                fwrite(out, 1, n, stdout);
                putchar('\n');
        }
        return 0;
}

static int do_json_string(const char *data, size_t len, const char *arg) {
        JsonOut j = JSON_OUT_INIT;
        _cleanup_free_ char *out = NULL;
        size_t n;
        json_out_string_len(&j, data, len);
        int r = json_out_finish(&j, &out, &n);
        if (r < 0) {
                print_error("json", r, NULL);
                return 0;
        }
        fwrite(out, 1, n, stdout);
        putchar('\n');
        return 0;
}

/* {"env":[{"key":K,"value":V},...],"allowed_envs":[...]} (allowed optional) */
static int load_env_request(const char *data, size_t len, EnvList *env, char ***allowed) {
        g_autoptr(JsonParser) p = json_parser_new();
        if (!json_parser_load_from_data(p, data, (gssize) len, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p)))
                return -EINVAL;
        JsonObject *o = json_node_get_object(json_parser_get_root(p));
        JsonArray *a = json_object_get_array_member(o, "env");
        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                JsonObject *e = json_array_get_object_element(a, i);
                if (env_list_add(env, json_object_get_string_member(e, "key"),
                                 json_object_get_string_member(e, "value")) < 0)
                        return -ENOMEM;
        }
        if (!json_object_has_member(o, "allowed_envs"))
                return 0;
        JsonArray *al = json_object_get_array_member(o, "allowed_envs");
        *allowed = calloc(1, sizeof(char *));
        for (guint i = 0; *allowed && i < json_array_get_length(al); i++)
                if (strv_extend(allowed, json_array_get_string_element(al, i)) < 0)
                        return -ENOMEM;
        return *allowed ? 0 : -ENOMEM;
}

static int do_encrypt(const char *data, size_t len, const char *pubhex) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_strv_free_ char **allowed = NULL, **dropped = NULL;
        _cleanup_free_ char *hex = NULL, *err = NULL;
        uint8_t pk[ENV_X25519_KEY_LEN];

        if (!pubhex || hex_decode_exact(pubhex, pk, sizeof pk) < 0)
                return -EINVAL;
        int r = load_env_request(data, len, &env, &allowed);
        if (r < 0)
                return r;
        r = env_encrypt(&env, allowed, pk, &hex, &dropped, &err);
        if (r < 0) {
                print_error("encrypt", r, err);
                return 0;
        }
        g_autofree char *joined = g_strjoinv(",", dropped);
        printf("%s %s\n", hex, isempty(joined) ? "-" : joined);
        return 0;
}

static int run_batch(const char *data, size_t len, RecordFn fn, const char *arg) {
        size_t pos = 0;
        while (pos < len) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(data + pos, &end, 10);
                if (errno || *end != '\n' || n > len - (size_t) (end + 1 - data))
                        return -EINVAL;
                pos = (size_t) (end + 1 - data);
                int r = fn(data + pos, (size_t) n, arg);
                if (r < 0)
                        return r;
                pos += (size_t) n;
        }
        return 0;
}

static const struct {
        const char *name;
        RecordFn fn;
} commands[] = {
        { "compose", do_compose },
        { "json-string", do_json_string },
        { "encrypt", do_encrypt },
};

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: %s compose [--hash] | json-string | encrypt PUBHEX  (< input)\n"
                        "       %s batch COMMAND [ARG]  (< records \"<len>\\n<bytes>\")\n", argv[0], argv[0]);
                return 2;
        }
        bool batch = streq(argv[1], "batch");
        const char *cmd = argv[batch ? 2 : 1], *arg = argc > (batch ? 3 : 2) ? argv[batch ? 3 : 2] : NULL;
        size_t len;
        _cleanup_free_ char *in = read_all(stdin, &len);
        if (!in || !cmd)
                return 1;
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(cmd, commands[i].name)) {
                        int r = batch ? run_batch(in, len, commands[i].fn, arg) : commands[i].fn(in, len, arg);
                        if (r < 0)
                                fprintf(stderr, "%s: %s\n", cmd, strerror(-r));
                        return r < 0 ? 1 : 0;
                }
        fprintf(stderr, "unknown command %s\n", cmd);
        return 2;
}
