/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include <json-glib/json-glib.h>

/* A VM declared by the operator (Config.AddVm; config.json key "vms"), beside
 * the one the Platform API describes. Pure: validation and JSON only. */

#define VM_NAME_MAX 255u
#define VM_SOURCE_MAX 4096u
#define VMS_MAX 256u

typedef struct VmDecl {
        char *name;             /* its name at the VMM */
        char *source;           /* http(s)://... or file:///abs/path.json: a document in the API's spec format */
        char *update_strategy;  /* "recreate", "in-place", or "" = the UpdateStrategy setting */
        char *adopt_policy;     /* "keep", "redeploy", or "" = the AdoptPolicy setting */
        bool autostart;         /* false: declared, created only by Start */
        char **env_keys;        /* the local env keys it may receive */
} VmDecl;

VmDecl *vm_decl_new(const char *name, const char *source);
VmDecl *vm_decl_copy(const VmDecl *d);
void vm_decl_free(VmDecl *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmDecl, vm_decl_free)
bool vm_decl_equal(const VmDecl *a, const VmDecl *b);

/* dstack's label rules (HEAD vmm main_service.rs validate_label): ASCII
 * letters, digits and - _ . space @ ~ ! $ ^ ( ); not empty, at most
 * VM_NAME_MAX bytes. NULL when valid, else why not (static text). */
const char *vm_name_problem(const char *name);
/* http:// or https:// (as ApiUrl), or file:// with an absolute path without
 * "..". NULL when valid, else why not (static text). */
const char *vm_source_problem(const char *source);
/* The path of a file:// source, NULL for any other. */
const char *vm_source_file_path(const char *source);

/* "vms": {"<name>": {"source": s, "update_strategy": s, "adopt_policy": s,
 * "autostart": b, "env_keys": [s]}}. Errors name the field ("vms.<name>.source:
 * ..."); unknown members are refused. */
int vm_decls_from_json(JsonNode *node, GPtrArray **ret, char **ret_error);
JsonNode *vm_decls_to_json(GPtrArray *decls);
