/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "core/fileio.h"
#include "core/history.h"
#include "shared/json-load.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/text.h"

#define HISTORY_FILE_MAX (4u * 1024u * 1024u)

struct History {
        char *path;
        unsigned max;
        GPtrArray *entries;  /* HistoryEntry *, strings owned; oldest first */
        history_appended_cb cb;
        void *userdata;
};

static const char *const kind_names[_HISTORY_KIND_MAX] = {
        [HISTORY_KIND_VM] = "vm",
        [HISTORY_KIND_UPDATER] = "updater",
};

const char *history_kind_to_string(HistoryKind k) {
        return k >= 0 && k < _HISTORY_KIND_MAX ? kind_names[k] : NULL;
}

HistoryKind history_kind_from_string(const char *s) {
        for (int k = 0; s && k < _HISTORY_KIND_MAX; k++)
                if (streq(kind_names[k], s))
                        return (HistoryKind) k;
        return _HISTORY_KIND_INVALID;
}

static void entry_free(void *p) {
        HistoryEntry *e = p;
        if (!e)
                return;
        g_free((char *) e->subject);
        g_free((char *) e->action);
        g_free((char *) e->trigger);
        g_free((char *) e->from);
        g_free((char *) e->to);
        g_free((char *) e->reason);
        g_free(e);
}

/* Valid UTF-8 without control characters (C0, DEL, C1), at most max bytes,
 * cut at a character boundary. */
static char *bounded(const char *s, size_t max) {
        return text_sanitize(strempty(s), strlen(strempty(s)), max, TEXT_ONE_LINE | TEXT_SPACES | TEXT_NO_ELLIPSIS);
}

static HistoryEntry *entry_copy(const HistoryEntry *e) {
        HistoryEntry *c = g_new0(HistoryEntry, 1);
        c->timestamp_usec = e->timestamp_usec;
        c->kind = e->kind;
        c->subject = bounded(e->subject, HISTORY_FIELD_MAX);
        c->action = bounded(e->action, HISTORY_FIELD_MAX);
        c->trigger = bounded(e->trigger, HISTORY_FIELD_MAX);
        c->from = bounded(e->from, HISTORY_FIELD_MAX);
        c->to = bounded(e->to, HISTORY_FIELD_MAX);
        c->ok = e->ok;
        c->reason = bounded(e->ok ? "" : e->reason, HISTORY_REASON_MAX);
        c->duration_usec = e->duration_usec;
        return c;
}

static void drop_oldest(History *h) {
        if (h->entries->len > h->max)
                g_ptr_array_remove_range(h->entries, 0, h->entries->len - h->max);
}

static const char *get_str(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

static bool get_u64(JsonObject *o, const char *key, uint64_t *ret) {
        JsonNode *n = json_object_get_member(o, key);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 || json_node_get_int(n) < 0)
                return false;
        *ret = (uint64_t) json_node_get_int(n);
        return true;
}

/* One stored entry; false when it is not well formed. */
static bool entry_from_json(JsonNode *node, HistoryEntry *e) {
        if (!JSON_NODE_HOLDS_OBJECT(node))
                return false;
        JsonObject *o = json_node_get_object(node);
        const char *result = get_str(o, "result");
        *e = (HistoryEntry) {
                .kind = history_kind_from_string(get_str(o, "kind")),
                .subject = get_str(o, "subject"),
                .action = get_str(o, "action"),
                .trigger = get_str(o, "trigger"),
                .from = get_str(o, "from"),
                .to = get_str(o, "to"),
                .ok = result && streq(result, "ok"),
                .reason = get_str(o, "reason"),
        };
        return e->kind >= 0 && !isempty(e->action) && result && (streq(result, "ok") || streq(result, "failed")) &&
               get_u64(o, "timestamp_usec", &e->timestamp_usec) && get_u64(o, "duration_usec", &e->duration_usec);
}

static int history_load(History *h) {
        _cleanup_free_ char *data = NULL;
        size_t len;
        int r = read_file_limited(h->path, HISTORY_FILE_MAX, &data, &len);
        if (r == -ENOENT)
                return 0;

        g_autoptr(JsonParser) parser = NULL;
        JsonObject *o = NULL;
        g_autofree char *why = NULL;
        if (r >= 0)
                r = json_load_object(data, len, HISTORY_FILE_MAX, "history", &parser, &o, &why);
        else
                why = g_strdup_printf("cannot be read: %s", strerror(-r));
        JsonNode *list = r >= 0 ? json_object_get_member(o, "entries") : NULL;
        if (r >= 0 && (!list || !JSON_NODE_HOLDS_ARRAY(list))) {
                why = g_strdup("history: \"entries\" must be an array");
                r = -EINVAL;
        }
        if (r < 0) {
                g_autofree char *aside = g_strconcat(h->path, ".corrupt", NULL);
                (void) rename(h->path, aside);
                log_warning("%s: %s (moved to %s; the history starts empty).", h->path, why, aside);
                return 0;
        }

        JsonArray *a = json_node_get_array(list);
        unsigned skipped = 0;
        for (guint i = 0; i < json_array_get_length(a); i++) {
                HistoryEntry e;
                if (entry_from_json(json_array_get_element(a, i), &e))
                        g_ptr_array_add(h->entries, entry_copy(&e));
                else
                        skipped++;
        }
        if (skipped > 0)
                log_warning("%s: %u malformed entries skipped.", h->path, skipped);
        drop_oldest(h);
        return 0;
}

int history_new(const char *path, unsigned max, History **ret) {
        History *h = g_new0(History, 1);
        h->path = g_strdup(path);
        h->max = max > 0 ? max : HISTORY_MAX_DEFAULT;
        h->entries = g_ptr_array_new_with_free_func(entry_free);
        int r = history_load(h);
        if (r < 0) {
                history_free(h);
                return r;
        }
        *ret = h;
        return 0;
}

void history_free(History *h) {
        if (!h)
                return;
        g_ptr_array_unref(h->entries);
        g_free(h->path);
        g_free(h);
}

void history_set_callback(History *h, history_appended_cb cb, void *userdata) {
        h->cb = cb;
        h->userdata = userdata;
}

static int history_save(History *h) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "version");
        json_builder_add_int_value(b, 1);
        json_builder_set_member_name(b, "entries");
        json_builder_begin_array(b);
#define STR(k, v) (json_builder_set_member_name(b, k), json_builder_add_string_value(b, strempty(v)))
#define INT(k, v) (json_builder_set_member_name(b, k), json_builder_add_int_value(b, (gint64) (v)))
        for (guint i = 0; i < h->entries->len; i++) {
                const HistoryEntry *e = h->entries->pdata[i];
                json_builder_begin_object(b);
                INT("timestamp_usec", e->timestamp_usec);
                STR("kind", history_kind_to_string(e->kind));
                STR("subject", e->subject);
                STR("action", e->action);
                STR("trigger", e->trigger);
                STR("from", e->from);
                STR("to", e->to);
                STR("result", e->ok ? "ok" : "failed");
                STR("reason", e->reason);
                INT("duration_usec", e->duration_usec);
                json_builder_end_object(b);
        }
#undef STR
#undef INT
        json_builder_end_array(b);
        json_builder_end_object(b);

        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_root(gen, root);
        gsize len;
        g_autofree char *text = json_generator_to_data(gen, &len);
        return write_file_atomic(h->path, text, len, 0600);
}

int history_append(History *h, const HistoryEntry *e) {
        if (e->kind < 0 || e->kind >= _HISTORY_KIND_MAX || isempty(e->action))
                return -EINVAL;
        HistoryEntry *c = entry_copy(e);
        if (c->timestamp_usec == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                c->timestamp_usec = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        g_ptr_array_add(h->entries, c);
        drop_oldest(h);
        int r = history_save(h);
        if (h->cb)
                h->cb(h, c, h->userdata);
        return r;
}

size_t history_size(const History *h) {
        return h->entries->len;
}

const HistoryEntry *history_get(const History *h, size_t i) {
        return i < h->entries->len ? h->entries->pdata[i] : NULL;
}
