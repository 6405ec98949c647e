/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

/* Objects served from their fields (SD_BUS_PROPERTY(name, sig, getter,
 * offsetof(T, field), EMITS_CHANGE)): a copy of what was last sent, so what
 * changed is found by comparing, without a list of change bits to keep.
 *
 * Fields by signature: "s" without getter a char *; "u" uint32_t; "t"
 * uint64_t; "d" double; "as" a char ** served by bus_property_get_strv;
 * "(ddd)" a double[3] served by bus_property_get_ddd; "s" with another getter
 * an enum (int) shown as a word by it. */

typedef struct BusSent BusSent;

BusSent *bus_sent_new(const sd_bus_vtable *vtable, const void *object, size_t size);
void bus_sent_free(BusSent *s);
/* The names of the properties whose fields differ from the copy, which then
 * holds the new values; NULL-terminated in names (room for every property). */
size_t bus_sent_take(BusSent *s, const void *object, const char **names, size_t max);

int bus_property_get_strv(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error);
int bus_property_get_ddd(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error);
