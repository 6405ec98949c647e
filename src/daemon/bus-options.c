/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include <glib.h>

#include "daemon/bus-options.h"
#include "shared/macro.h"

static const char *signature(BusOptionType t) {
        return t == BUS_OPTION_BOOL ? "b" : t == BUS_OPTION_STRING ? "s" : "as";
}

static int read_value(sd_bus_message *msg, const BusOption *o) {
        switch (o->type) {
        case BUS_OPTION_BOOL: {
                int b;
                int q = sd_bus_message_read(msg, "v", "b", &b);
                if (q >= 0)
                        *(bool *) o->value = b;
                return q;
        }
        case BUS_OPTION_STRING:
                return sd_bus_message_read(msg, "v", "s", (const char **) o->value);
        case BUS_OPTION_STRV: {
                char ***l = o->value;
                int q = sd_bus_message_enter_container(msg, 'v', "as");
                if (q >= 0) {
                        g_strfreev(*l);
                        *l = NULL;
                        q = sd_bus_message_read_strv(msg, l);
                }
                if (q >= 0 && !*l)
                        *l = g_new0(char *, 1);
                return q < 0 ? q : sd_bus_message_exit_container(msg);
        }
        }
        return -EINVAL;
}

int bus_read_options(sd_bus_message *msg, const BusOption *table, sd_bus_error *error) {
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        int q = sd_bus_message_enter_container(msg, 'a', "{sv}");
        while (q >= 0 && (q = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *contents;
                const BusOption *o = table;
                q = sd_bus_message_read(msg, "s", &key);
                if (q < 0)
                        return q;
                while (o->key && !streq(o->key, key))
                        o++;
                if (!o->key)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%.64s'.", key);
                if (!g_hash_table_add(seen, (char *) o->key))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' given twice.", o->key);
                q = sd_bus_message_peek_type(msg, NULL, &contents);
                if (q < 0)
                        return q;
                if (!streq(contents, signature(o->type)))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be of type '%s'.",
                                                 o->key, signature(o->type));
                q = read_value(msg, o);
                if (q >= 0)
                        q = sd_bus_message_exit_container(msg);
        }
        return q < 0 ? q : sd_bus_message_exit_container(msg);
}
