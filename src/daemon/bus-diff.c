/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include <glib.h>

#include "daemon/bus-diff.h"
#include "shared/macro.h"

struct BusSent {
        const sd_bus_vtable *vtable;
        size_t size;
        uint8_t copy[];
};

int bus_property_get_strv(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        char **const *l = userdata;
        return sd_bus_message_append_strv(reply, *l);
}

int bus_property_get_ddd(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const double *d = userdata;
        return sd_bus_message_append(reply, "(ddd)", d[0], d[1], d[2]);
}

typedef enum FieldKind { FIELD_STRING, FIELD_STRV, FIELD_BYTES } FieldKind;

static FieldKind kind_of(const sd_bus_vtable *v, size_t *ret_size) {
        const char *sig = v->x.property.signature;
        *ret_size = 0;
        if (v->x.property.get == bus_property_get_strv)
                return FIELD_STRV;
        if (v->x.property.get == bus_property_get_ddd) {
                *ret_size = 3 * sizeof(double);
                return FIELD_BYTES;
        }
        if (streq(sig, "s"))
                return v->x.property.get ? (*ret_size = sizeof(int), FIELD_BYTES) : FIELD_STRING;
        *ret_size = streq(sig, "u") || streq(sig, "b") ? sizeof(uint32_t)
                  : streq(sig, "t") || streq(sig, "d") ? sizeof(uint64_t)
                                                      : 0;
        return FIELD_BYTES;
}

#define FOREACH_CHANGING(v, vtable)                                                             \
        for (const sd_bus_vtable *v = (vtable); v->type != _SD_BUS_VTABLE_END; v++)            \
                if (v->type == _SD_BUS_VTABLE_PROPERTY &&                                       \
                    (v->flags & SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE))

static bool take(uint8_t *copy, const uint8_t *object, const sd_bus_vtable *v) {
        size_t off = v->x.property.offset, n;
        switch (kind_of(v, &n)) {
        case FIELD_STRING: {
                char **dst = (char **) (copy + off), *const *src = (char *const *) (object + off);
                if (*dst && streq_ptr(*dst, *src))
                        return false;
                g_free(*dst);
                *dst = g_strdup(*src);
                return true;
        }
        case FIELD_STRV: {
                char ***dst = (char ***) (copy + off), **const *src = (char **const *) (object + off);
                if (*dst && g_strv_equal((const char *const *) *dst, (const char *const *) *src))
                        return false;
                g_strfreev(*dst);
                *dst = g_strdupv(*src);
                return true;
        }
        case FIELD_BYTES:
                if (n == 0 || memcmp(copy + off, object + off, n) == 0)
                        return false;
                memcpy(copy + off, object + off, n);
                return true;
        }
        return false;
}

BusSent *bus_sent_new(const sd_bus_vtable *vtable, const void *object, size_t size) {
        BusSent *s = g_malloc0(sizeof(BusSent) + size);
        s->vtable = vtable;
        s->size = size;
        FOREACH_CHANGING(v, vtable)
                (void) take(s->copy, object, v);
        return s;
}

void bus_sent_free(BusSent *s) {
        if (!s)
                return;
        FOREACH_CHANGING(v, s->vtable) {
                size_t n;
                FieldKind k = kind_of(v, &n);
                if (k == FIELD_STRING)
                        g_free(*(char **) (s->copy + v->x.property.offset));
                else if (k == FIELD_STRV)
                        g_strfreev(*(char ***) (s->copy + v->x.property.offset));
        }
        g_free(s);
}

size_t bus_sent_take(BusSent *s, const void *object, const char **names, size_t max) {
        size_t n = 0;
        FOREACH_CHANGING(v, s->vtable)
                if (take(s->copy, object, v) && n + 1 < max)
                        names[n++] = v->x.property.member;
        names[n] = NULL;
        return n;
}
