/* SPDX-License-Identifier: Apache-2.0 */
#include <stddef.h>
#include <string.h>

#include <glib.h>

#include "core/vm.h"
#include "shared/text.h"
#include "shared/macro.h"

static const char *const state_names[_VM_STATE_MAX] = {
        [VM_STATE_PENDING] = "pending",   [VM_STATE_BLOCKED] = "blocked", [VM_STATE_CREATING] = "creating",
        [VM_STATE_STARTING] = "starting", [VM_STATE_RUNNING] = "running", [VM_STATE_UPDATING] = "updating",
        [VM_STATE_STOPPING] = "stopping", [VM_STATE_STOPPED] = "stopped", [VM_STATE_FAILED] = "failed",
};

const char *vm_state_to_string(VmState s) {
        return s >= VM_STATE_FIRST && s < _VM_STATE_MAX ? state_names[s] : NULL;
}

/* Texts from outside (issue 9 #13): valid, bounded, no control character
 * (a VMM or API text reaches StateReason and an operator's terminal). */
char *text_bound(const char *s) {
        return text_sanitize(strempty(s), strlen(strempty(s)), TEXT_BOUND, 0);
}

void vm_set_str(Vm *vm, char **field, const char *value) {
        if (streq(*field, strempty(value)))
                return;
        g_free(*field);
        *field = g_strdup(strempty(value));
        vm->changed = true;
}

void vm_set_strv(Vm *vm, char ***field, char *const *value) {
        char *const empty[] = { NULL };
        if (!value)
                value = empty;
        if (g_strv_equal((const char *const *) *field, (const char *const *) value))
                return;
        g_strfreev(*field);
        *field = g_strdupv((char **) value);
        vm->changed = true;
}

void vm_set_u32(Vm *vm, uint32_t *field, uint32_t value) {
        if (*field != value) {
                *field = value;
                vm->changed = true;
        }
}

void vm_set_u64(Vm *vm, uint64_t *field, uint64_t value) {
        if (*field != value) {
                *field = value;
                vm->changed = true;
        }
}

void vm_set_state(Vm *vm, VmState state, const char *reason) {
        if (vm->state != state) {
                vm->state = state;
                vm->changed = true;
        }
        g_autofree char *b = text_bound(reason);
        vm_set_str(vm, &vm->state_reason, b);
}

void vm_set_name(Vm *vm, const char *name) {
        vm_set_str(vm, &vm->name, name);
}

/* The blocks of a Vm: strings from name up to the lists, lists up to state. */
#define FOREACH_VM_STRING(p, vm)                                                              \
        for (char **p = (char **) ((uint8_t *) (vm) + offsetof(Vm, name));                     \
             (uint8_t *) p < (uint8_t *) (vm) + offsetof(Vm, allowed_env); p++)
#define FOREACH_VM_STRV(p, vm)                                                                \
        for (char ***p = (char ***) ((uint8_t *) (vm) + offsetof(Vm, allowed_env));           \
             (uint8_t *) p < (uint8_t *) (vm) + offsetof(Vm, state); p++)

Vm *vm_new(const char *name) {
        Vm *vm = g_new0(Vm, 1);
        FOREACH_VM_STRING(p, vm)
                *p = g_strdup("");
        FOREACH_VM_STRV(p, vm)
                *p = g_new0(char *, 1);
        vm_set_name(vm, name);
        vm->state = VM_STATE_PENDING;
        vm->changed = false;
        return vm;
}

void vm_free(Vm *vm) {
        if (!vm)
                return;
        FOREACH_VM_STRING(p, vm)
                g_free(*p);
        FOREACH_VM_STRV(p, vm)
                g_strfreev(*p);
        g_free(vm);
}
