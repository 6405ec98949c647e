/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: every dstack VMM reply parser on the same bytes. The
 * VMM is local but its replies are still untrusted input: a parser may
 * refuse, never crash, leak or return an unnamed error. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <glib.h>

#include "clients/platform-api.h"
#include "clients/vmm-json.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* A json-glib critical means we called it on a node of the wrong type. */
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

/* Refusals must be -EBADMSG with a message (or -ENOMEM). */
static void check(int r, char **err) {
        if (r < 0 && r != -ENOMEM && (r != -EBADMSG || !*err))
                abort();
        if (r == 0 && *err)
                abort();
        *err = mfree(*err);
}

static void check_vm(const VmInfo *v) {
        if (!v->id || !v->id[0] || !vm_status_to_string(v->status))
                abort();
        for (size_t i = 0; v->has_configuration && i < v->configuration.n_ports; i++) {
                const VmPort *p = &v->configuration.ports[i];
                if (!p->host_address || p->host_port > 65535 || p->vm_port > 65535)
                        abort();
        }
}

static void fuzz_status(const char *d, size_t n) {
        _cleanup_free_ char *err = NULL;
        VmmStatusReply s = {};
        int r = vmm_parse_status_reply(d, n, &s, &err);
        check(r, &err);
        for (size_t i = 0; r == 0 && i < s.n_vms; i++)
                check_vm(&s.vms[i]);
        if (r == 0)
                vmm_status_reply_done(&s);
}

static void fuzz_info(const char *d, size_t n) {
        _cleanup_free_ char *err = NULL;
        VmmInfoReply g = {};
        int r = vmm_parse_info_reply(d, n, &g, &err);
        check(r, &err);
        if (r == 0 && g.found != (g.info != NULL))
                abort();
        if (r == 0 && g.info)
                check_vm(g.info);
        if (r == 0)
                vmm_info_reply_done(&g);
}

static void fuzz_small(const char *d, size_t n) {
        _cleanup_free_ char *err = NULL, *s = NULL, *msg = NULL;
        VmmPubKeyReply k;
        VmmVersionReply v = {};
        VmmMetaReply m;
        VmmImagesReply l = {};
        VmmVersion ver;

        check(vmm_parse_empty_reply("StartVm", d, n, &err), &err);
        check(vmm_parse_id_reply("CreateVm", d, n, &s, &err), &err);
        s = mfree(s);
        check(vmm_parse_compose_hash_reply(d, n, &s, &err), &err);
        check(vmm_parse_pubkey_reply(d, n, &k, &err), &err);
        int r = vmm_parse_version_reply(d, n, &v, &err);
        check(r, &err);
        if (r == 0) {
                (void) vmm_version_parse(v.version, &ver);
                vmm_version_reply_done(&v);
        }
        check(vmm_parse_meta_reply(d, n, &m, &err), &err);
        r = vmm_parse_images_reply(d, n, &l, &err);
        check(r, &err);
        if (r == 0)
                vmm_images_reply_done(&l);
        if (vmm_parse_error_reply(d, n, &msg) == 0 && !msg)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *d = (const char *) data;

        fuzz_status(d, size);
        fuzz_info(d, size);
        fuzz_small(d, size);
        return 0;
}
