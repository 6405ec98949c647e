/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-bus.h>

/* An a{sv} of options read by one table (RAUC's rule: an unknown key, a key
 * given twice or a value of the wrong type is InvalidArgs naming it). */

typedef enum BusOptionType {
        BUS_OPTION_BOOL,        /* b  → bool * */
        BUS_OPTION_STRING,      /* s  → const char ** (valid while the message is) */
        BUS_OPTION_STRV,        /* as → char *** (allocated; the caller frees it) */
} BusOptionType;

typedef struct BusOption {
        const char *key;
        BusOptionType type;
        void *value;
} BusOption;

/* Reads the a{sv} at the message's position into the table's values (ended
 * by an entry with key NULL); keys not given leave their value alone. */
int bus_read_options(sd_bus_message *msg, const BusOption *table, sd_bus_error *error);
