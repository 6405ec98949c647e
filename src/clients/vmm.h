/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/http.h"
#include "clients/guest-json.h"
#include "clients/vmm-json.h"

/* dstack VMM prpc client: POST {url}/prpc/<Method>?json on the shared HTTP
 * context. Protocol only: no retries, no policy. */

typedef struct VmmClient VmmClient;
typedef struct VmmCall VmmCall;

typedef enum VmmErrorKind {
        VMM_OK,
        VMM_ERROR_TRANSPORT, /* no HTTP answer; error is the transport errno */
        VMM_ERROR_REPLY,     /* 400 {"error": ...}: the VMM refused; -EREMOTEIO */
        VMM_ERROR_AUTH,      /* 401; -EACCES */
        VMM_ERROR_HTTP,      /* any other non-200 status; -EREMOTEIO */
        VMM_ERROR_PROTOCOL,  /* 200, but the reply failed validation; -EBADMSG */
} VmmErrorKind;

typedef struct VmmResult {
        int error;           /* 0 or negative errno, see VmmErrorKind */
        VmmErrorKind kind;
        const char *message; /* "StartVm: VM not found" etc.; set when error < 0 */
        const char *vmm_message; /* the VMM's own text for VMM_ERROR_REPLY */
        const char *method;  /* the method actually called (UpdateVm or UpgradeApp) */
        long http_status;

        /* On success, the member for the method called is set. */
        const VmmStatusReply *status;   /* Status */
        const VmmInfoReply *info;       /* GetInfo */
        const char *id;                 /* CreateVm: the new VM's id */
        /* UpdateVm/UpgradeApp: the app-id prefix of the compose just sent
         * (sha256(compose_file)[:40]), NULL when none was sent or the VMM said
         * "" or null. Not the VM's app id, which an update never changes. */
        const char *compose_app_id;
        const char *hash;               /* GetComposeHash */
        const VmmPubKeyReply *pubkey;   /* GetAppEnvEncryptPubKey */
        const VmmVersionReply *version; /* Version */
        const VmmMetaReply *meta;       /* GetMeta */
        const VmmImagesReply *images;   /* ListImages */
        const VmmGuestSysInfo *sysinfo; /* guest SysInfo */
        const char *text;               /* logs */
        size_t text_len;
} VmmResult;

/* Fires once unless cancelled; result and call are valid only during it. */
typedef void (*vmm_done_cb)(VmmCall *call, const VmmResult *result, void *userdata);

/* url: "http://host:port[/]" or "unix:/path/vmm.sock". -EINVAL if invalid. */
int vmm_client_new(HttpContext *http, const char *url, VmmClient **ret);
/* Cancels calls in flight; their callbacks never fire. */
VmmClient *vmm_client_free(VmmClient *c);
static inline void vmm_client_freep(VmmClient **p) {
        if (*p)
                vmm_client_free(*p);
}

int vmm_client_set_token(VmmClient *c, const char *token); /* NULL = none */
void vmm_client_set_timeout(VmmClient *c, uint64_t usec);  /* per call */
void vmm_client_set_max_response(VmmClient *c, size_t bytes);
/* Known VMM version; a successful Version call also records it. It picks
 * UpdateVm (≥0.5.6) or UpgradeApp. */
void vmm_client_set_version(VmmClient *c, const VmmVersion *v);
bool vmm_client_get_version(VmmClient *c, VmmVersion *ret);
const char *vmm_client_url(VmmClient *c);

/* Each returns 0 or a negative errno (-EINVAL bad argument, -ENOMEM); the
 * callback never fires synchronously. ret is optional. */
int vmm_status(VmmClient *c, const char *const *ids, const char *keyword, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_get_info(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_create_vm(VmmClient *c, const VmConfiguration *conf, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_start_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_shutdown_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_stop_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_remove_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
/* UpdateVm, or UpgradeApp on VMMs older than 0.5.6 or answering
 * "Service not found" to UpdateVm. result->method says which ran. */
int vmm_update_vm(VmmClient *c, const VmmUpdateRequest *req, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_get_compose_hash(VmmClient *c, const VmConfiguration *conf, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_get_app_env_encrypt_pubkey(VmmClient *c, const char *app_id, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_version(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_get_meta(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret);
int vmm_list_images(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret);
/* POST {url}/guest/SysInfo?json {"id"}: the guest agent's figures through
 * the VMM (dstack vmm/src/main.rs mounts /guest, guest_api_service.rs
 * forwards to the guest agent); fails when the guest is down or has no agent. */
int vmm_guest_sys_info(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret);
/* GET /logs?id=&follow=false&ansi=false&lines=&ch= (serial|stdout|stderr). */
int vmm_logs(VmmClient *c, const char *id, unsigned lines, const char *channel, vmm_done_cb cb, void *userdata, VmmCall **ret);

/* Streaming logs: called with each piece of the body of a 200 answer as it
 * arrives (pieces need not end at a line). Return 0 to go on, or a negative
 * errno to end the stream (the done callback then fires with -ECANCELED).
 * Must not cancel the call itself. */
typedef int (*vmm_data_cb)(VmmCall *call, const void *data, size_t size, void *userdata);

/* GET /logs?id=&follow=true&ansi=false&lines=&ch=: the body goes to data as
 * it arrives; done fires once when the VMM ends the stream (result->error 0
 * and empty text), on a transport error, or with the VMM's error answer.
 * No whole-call timeout and no size limit; the caller bounds its buffering. */
int vmm_logs_follow(VmmClient *c, const char *id, unsigned lines, const char *channel, vmm_data_cb data,
                    vmm_done_cb done, void *userdata, VmmCall **ret);

/* Safe from any callback; a no-op for the call whose callback is running. */
void vmm_call_cancel(VmmCall *call);

/* Takes the Status reply out of a result inside the callback, so the caller
 * may keep it (free it with vmm_status_reply_done()); the result is left empty. */
void vmm_result_take_status(const VmmResult *res, VmmStatusReply *ret);
