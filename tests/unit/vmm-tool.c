/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for the VMM client: one call on a real sd-event loop, result
 * printed as one JSON object on stdout. Built, not installed.
 *
 *   vmm-tool [options] URL COMMAND [ARG...]
 *   options: --token T --timeout-ms N --max-bytes N --detect-version
 *            --name N --image I --compose-file PATH --app-id A --vcpu N
 *            --memory N --disk N --port proto:host:vm[:addr] --env-hex H
 *            --stopped --update-ports --keyword K --lines N --channel C
 *   commands: version status get-info ID create-vm compose-hash
 *             start-vm ID shutdown-vm ID stop-vm ID remove-vm ID
 *             update-vm ID pubkey APP_ID meta images logs ID
 * Exit 0 on success, 2 on a call error (printed as {"error": ...}), 1 on
 * usage errors. While waiting, a 10 ms timer measures loop latency
 * ("loop_max_gap_ms"). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-glib/json-glib.h>

#include "clients/vmm.h"
#include "shared/hex.h"
#include "shared/macro.h"

typedef struct Tool {
        sd_event *event;
        VmmClient *vmm;
        VmConfiguration conf;
        VmPort ports[8];
        bool update_ports;
        char *keyword;
        unsigned lines;
        char *channel;
        bool detect_version;
        char **args;
        int n_args;
        int exit_code;
        uint64_t last_tick, max_gap;
} Tool;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Tool *t = userdata;
        uint64_t n = now_usec();
        if (t->last_tick && n - t->last_tick > t->max_gap)
                t->max_gap = n - t->last_tick;
        t->last_tick = n;
        return sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC);
}

static const char *kind_name(VmmErrorKind k) {
        static const char *const names[] = { "ok", "transport", "reply", "auth", "http", "protocol" };
        return k < ELEMENTSOF(names) ? names[k] : "?";
}

static void add_str(JsonBuilder *b, const char *k, const char *v) {
        json_builder_set_member_name(b, k);
        if (v)
                json_builder_add_string_value(b, v);
        else
                json_builder_add_null_value(b);
}

static void add_int(JsonBuilder *b, const char *k, int64_t v) {
        json_builder_set_member_name(b, k);
        json_builder_add_int_value(b, v);
}

static void add_bool(JsonBuilder *b, const char *k, bool v) {
        json_builder_set_member_name(b, k);
        json_builder_add_boolean_value(b, v);
}

static void add_vm(JsonBuilder *b, const VmInfo *v) {
        json_builder_begin_object(b);
        add_str(b, "id", v->id);
        add_str(b, "name", v->name);
        add_str(b, "status", vm_status_to_string(v->status));
        add_str(b, "app_id", v->app_id);
        add_str(b, "uptime", v->uptime);
        add_str(b, "exited_at", v->exited_at);
        add_str(b, "boot_progress", v->boot_progress);
        add_str(b, "boot_error", v->boot_error);
        add_str(b, "image_version", v->image_version);
        if (v->has_configuration) {
                const VmConfiguration *c = &v->configuration;
                add_str(b, "image", c->image);
                add_str(b, "compose_file", c->compose_file);
                add_int(b, "vcpu", c->vcpu);
                add_int(b, "memory", c->memory);
                add_int(b, "disk_size", c->disk_size);
                add_bool(b, "stopped", c->stopped);
                json_builder_set_member_name(b, "ports");
                json_builder_begin_array(b);
                for (size_t i = 0; i < c->n_ports; i++) {
                        json_builder_begin_object(b);
                        add_str(b, "protocol", c->ports[i].protocol);
                        add_int(b, "host_port", c->ports[i].host_port);
                        add_int(b, "vm_port", c->ports[i].vm_port);
                        add_str(b, "host_address", c->ports[i].host_address);
                        json_builder_end_object(b);
                }
                json_builder_end_array(b);
        }
        json_builder_end_object(b);
}

static void add_result(JsonBuilder *b, const VmmResult *r) {
        if (r->status) {
                add_int(b, "total", (int64_t) r->status->total);
                add_bool(b, "port_mapping_enabled", r->status->port_mapping_enabled);
                json_builder_set_member_name(b, "vms");
                json_builder_begin_array(b);
                for (size_t i = 0; i < r->status->n_vms; i++)
                        add_vm(b, &r->status->vms[i]);
                json_builder_end_array(b);
        }
        if (r->info) {
                add_bool(b, "found", r->info->found);
                if (r->info->info) {
                        json_builder_set_member_name(b, "vm");
                        add_vm(b, r->info->info);
                }
        }
        if (r->id)
                add_str(b, "id", r->id);
        if (r->compose_app_id)
                add_str(b, "compose_app_id", r->compose_app_id);
        if (r->hash)
                add_str(b, "hash", r->hash);
        if (r->pubkey) {
                g_autofree char *pk = hex_encode(r->pubkey->public_key, 32);
                add_str(b, "public_key", pk);
                add_bool(b, "has_signature", r->pubkey->has_signature);
                add_bool(b, "has_signature_v1", r->pubkey->has_signature_v1);
                add_bool(b, "has_timestamp", r->pubkey->has_timestamp);
                add_int(b, "timestamp", (int64_t) r->pubkey->timestamp);
        }
        if (r->version) {
                add_str(b, "version", r->version->version);
                add_str(b, "rev", r->version->rev);
        }
        if (r->meta) {
                add_int(b, "max_cvm_number", r->meta->max_cvm_number);
                add_int(b, "max_allocable_vcpu", r->meta->max_allocable_vcpu);
                add_int(b, "max_allocable_memory_in_mb", r->meta->max_allocable_memory_in_mb);
        }
        if (r->images) {
                json_builder_set_member_name(b, "images");
                json_builder_begin_array(b);
                for (size_t i = 0; i < r->images->n_images; i++) {
                        json_builder_begin_object(b);
                        add_str(b, "name", r->images->images[i].name);
                        add_str(b, "version", r->images->images[i].version);
                        add_bool(b, "is_dev", r->images->images[i].is_dev);
                        json_builder_end_object(b);
                }
                json_builder_end_array(b);
        }
        if (r->text) {
                g_autofree char *t = g_strndup(r->text, r->text_len);
                add_str(b, "text", t);
        }
}

static void print_result(Tool *t, const VmmResult *r) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        add_str(b, "method", r->method);
        add_int(b, "http_status", r->http_status);
        add_int(b, "loop_max_gap_ms", (int64_t) (t->max_gap / USEC_PER_MSEC));
        if (r->error < 0) {
                add_str(b, "error", strerrorname_np(-r->error));
                add_str(b, "kind", kind_name(r->kind));
                add_str(b, "message", r->message);
                add_str(b, "vmm_message", r->vmm_message);
        } else
                add_result(b, r);
        json_builder_end_object(b);

        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) g = json_generator_new();
        json_generator_set_root(g, root);
        g_autofree char *s = json_generator_to_data(g, NULL);
        printf("%s\n", s);
        fflush(stdout);
        t->exit_code = r->error < 0 ? 2 : 0;
}

static int run_command(Tool *t);

static void on_done(VmmCall *call, const VmmResult *r, void *userdata) {
        Tool *t = userdata;
        if (t->detect_version && r->version && !r->error && t->n_args > 0 && !streq(t->args[0], "version")) {
                t->detect_version = false;
                int k = run_command(t);
                if (k >= 0)
                        return;
                fprintf(stderr, "%s: %s\n", t->args[0], strerror(-k));
                t->exit_code = 1;
        } else
                print_result(t, r);
        sd_event_exit(t->event, 0);
}

static const char *arg(Tool *t, int i) {
        return i < t->n_args ? t->args[i] : NULL;
}

static int run_command(Tool *t) {
        const char *cmd = arg(t, 0), *a1 = arg(t, 1);
        VmmClient *v = t->vmm;

        if (!cmd)
                return -EINVAL;
        if (t->detect_version)
                return vmm_version(v, on_done, t, NULL);
        if (streq(cmd, "version"))
                return vmm_version(v, on_done, t, NULL);
        if (streq(cmd, "status"))
                return vmm_status(v, NULL, t->keyword, on_done, t, NULL);
        if (streq(cmd, "get-info"))
                return vmm_get_info(v, a1, on_done, t, NULL);
        if (streq(cmd, "create-vm"))
                return vmm_create_vm(v, &t->conf, on_done, t, NULL);
        if (streq(cmd, "compose-hash"))
                return vmm_get_compose_hash(v, &t->conf, on_done, t, NULL);
        if (streq(cmd, "start-vm"))
                return vmm_start_vm(v, a1, on_done, t, NULL);
        if (streq(cmd, "shutdown-vm"))
                return vmm_shutdown_vm(v, a1, on_done, t, NULL);
        if (streq(cmd, "stop-vm"))
                return vmm_stop_vm(v, a1, on_done, t, NULL);
        if (streq(cmd, "remove-vm"))
                return vmm_remove_vm(v, a1, on_done, t, NULL);
        if (streq(cmd, "update-vm")) {
                VmmUpdateRequest u = {
                        .id = a1, .compose_file = t->conf.compose_file, .user_config = t->conf.user_config,
                        .encrypted_env = t->conf.encrypted_env, .encrypted_env_len = t->conf.encrypted_env_len,
                        .update_ports = t->update_ports, .ports = t->conf.ports, .n_ports = t->conf.n_ports,
                };
                return vmm_update_vm(v, &u, on_done, t, NULL);
        }
        if (streq(cmd, "pubkey"))
                return vmm_get_app_env_encrypt_pubkey(v, a1, on_done, t, NULL);
        if (streq(cmd, "meta"))
                return vmm_get_meta(v, on_done, t, NULL);
        if (streq(cmd, "images"))
                return vmm_list_images(v, on_done, t, NULL);
        if (streq(cmd, "logs"))
                return vmm_logs(v, a1, t->lines, t->channel, on_done, t, NULL);
        return -EINVAL;
}

static int parse_port(Tool *t, const char *s) {
        char proto[8] = {}, addr[64] = {};
        unsigned hp, vp;
        if (t->conf.n_ports >= ELEMENTSOF(t->ports))
                return -E2BIG;
        if (sscanf(s, "%7[a-z]:%u:%u:%63s", proto, &hp, &vp, addr) < 3)
                return -EINVAL;
        VmPort *p = &t->ports[t->conf.n_ports++];
        p->protocol = strdup(proto);
        p->host_port = hp;
        p->vm_port = vp;
        p->host_address = strdup(addr);
        t->conf.ports = t->ports;
        return 0;
}

static char *read_file(const char *path) {
        g_autofree char *s = NULL;
        if (!g_file_get_contents(path, &s, NULL, NULL))
                return NULL;
        return strdup(s);
}

static int parse_args(Tool *t, int argc, char *argv[], char **url, char **token, uint64_t *timeout, size_t *max) {
        enum { O_TOKEN = 256, O_TIMEOUT, O_MAX, O_DETECT, O_NAME, O_IMAGE, O_COMPOSE, O_APPID, O_VCPU, O_MEM,
               O_DISK, O_PORT, O_ENV, O_STOPPED, O_UPORTS, O_KEYWORD, O_LINES, O_CHANNEL };
        static const struct option opts[] = {
                { "token", 1, NULL, O_TOKEN }, { "timeout-ms", 1, NULL, O_TIMEOUT }, { "max-bytes", 1, NULL, O_MAX },
                { "detect-version", 0, NULL, O_DETECT }, { "name", 1, NULL, O_NAME }, { "image", 1, NULL, O_IMAGE },
                { "compose-file", 1, NULL, O_COMPOSE }, { "app-id", 1, NULL, O_APPID }, { "vcpu", 1, NULL, O_VCPU },
                { "memory", 1, NULL, O_MEM }, { "disk", 1, NULL, O_DISK }, { "port", 1, NULL, O_PORT },
                { "env-hex", 1, NULL, O_ENV }, { "stopped", 0, NULL, O_STOPPED }, { "update-ports", 0, NULL, O_UPORTS },
                { "keyword", 1, NULL, O_KEYWORD }, { "lines", 1, NULL, O_LINES }, { "channel", 1, NULL, O_CHANNEL },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case O_TOKEN: *token = optarg; break;
                case O_TIMEOUT: *timeout = strtoull(optarg, NULL, 10) * USEC_PER_MSEC; break;
                case O_MAX: *max = strtoull(optarg, NULL, 10); break;
                case O_DETECT: t->detect_version = true; break;
                case O_NAME: t->conf.name = strdup(optarg); break;
                case O_IMAGE: t->conf.image = strdup(optarg); break;
                case O_COMPOSE:
                        t->conf.compose_file = read_file(optarg);
                        if (!t->conf.compose_file)
                                return -ENOENT;
                        break;
                case O_APPID: t->conf.app_id = strdup(optarg); break;
                case O_VCPU: t->conf.vcpu = (uint32_t) strtoul(optarg, NULL, 10); break;
                case O_MEM: t->conf.memory = (uint32_t) strtoul(optarg, NULL, 10); break;
                case O_DISK: t->conf.disk_size = (uint32_t) strtoul(optarg, NULL, 10); break;
                case O_PORT:
                        if (parse_port(t, optarg) < 0)
                                return -EINVAL;
                        break;
                case O_ENV:
                        if (hex_decode(optarg, &t->conf.encrypted_env, &t->conf.encrypted_env_len) < 0)
                                return -EINVAL;
                        break;
                case O_STOPPED: t->conf.stopped = true; break;
                case O_UPORTS: t->update_ports = true; break;
                case O_KEYWORD: t->keyword = optarg; break;
                case O_LINES: t->lines = (unsigned) strtoul(optarg, NULL, 10); break;
                case O_CHANNEL: t->channel = optarg; break;
                default: return -EINVAL;
                }
        }
        if (optind + 2 > argc)
                return -EINVAL;
        *url = argv[optind];
        t->args = argv + optind + 1;
        t->n_args = argc - optind - 1;
        return 0;
}

int main(int argc, char *argv[]) {
        Tool t = { .lines = 100 };
        char *url = NULL, *token = NULL;
        uint64_t timeout = 0;
        size_t max = 0;
        HttpContext *http = NULL;
        sd_event_source *tick = NULL;
        int r;

        if (parse_args(&t, argc, argv, &url, &token, &timeout, &max) < 0) {
                fprintf(stderr, "usage: vmm-tool [options] URL COMMAND [ARG...]\n");
                return 1;
        }
        if (sd_event_default(&t.event) < 0 || http_context_new(t.event, &http) < 0)
                return 1;
        if (vmm_client_new(http, url, &t.vmm) < 0) {
                fprintf(stderr, "invalid VMM URL\n");
                return 1;
        }
        if (token)
                vmm_client_set_token(t.vmm, token);
        if (timeout)
                vmm_client_set_timeout(t.vmm, timeout);
        if (max)
                vmm_client_set_max_response(t.vmm, max);
        sd_event_add_time_relative(t.event, &tick, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1, on_tick, &t);
        sd_event_source_set_enabled(tick, SD_EVENT_ON);

        r = run_command(&t);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", strempty(arg(&t, 0)), strerror(-r));
                t.exit_code = 1;
        } else
                sd_event_loop(t.event);

        sd_event_source_disable_unref(tick);
        for (size_t i = 0; i < t.conf.n_ports; i++)
                vm_port_done(&t.ports[i]);
        t.conf.ports = NULL;
        t.conf.n_ports = 0;
        vm_configuration_done(&t.conf);
        vmm_client_free(t.vmm);
        http_context_free(http);
        sd_event_unref(t.event);
        return t.exit_code;
}
