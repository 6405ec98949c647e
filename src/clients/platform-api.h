/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/http.h"
#include "shared/api-spec.h"

/* Platform Network API client: the validator VM document (conditional GET,
 * parsed with shared/api-spec) and the busy gate GET {base}/validate/active. */

typedef struct PlatformApi PlatformApi;
typedef struct PlatformCall PlatformCall;

#define PLATFORM_SPEC_PATH "/config/compose/validator_vm"
#define PLATFORM_ACTIVE_PATH "/validate/active"
#define PLATFORM_ACTIVE_MAX (64 * 1024)

typedef struct PlatformSpecResult {
        /* 0; a transport errno (-ETIMEDOUT, -EFBIG, ...); -EREMOTEIO for an
         * HTTP status other than 200/304; -EINVAL for an invalid document. */
        int error;
        const char *message;      /* names the field for -EINVAL */
        long http_status;
        bool unchanged;           /* 304: the last good document still holds */
        PlatformVmSpec *spec;     /* on 200; the callback may take it (set NULL) */
        const char *body;         /* the document bytes on 200 */
        size_t body_len;
        /* The reply's ETag / Last-Modified failed http_etag_is_valid() /
         * http_date_is_valid() and was not remembered (worth a warning). */
        bool etag_refused;
        bool last_modified_refused;
} PlatformSpecResult;

/* GET /validate/active answers {"active":[{"job_id","status","log_url"},...]}
 * for the queued or running sandbox jobs (dstack.md §5b, alphacore's
 * validation_api.py list_active_jobs); {"active":[]} = idle. The first
 * PLATFORM_ACTIVE_JOBS_KEPT jobs are kept for a reason a person can read;
 * their texts are cut to PLATFORM_ACTIVE_TEXT_MAX bytes, bytes outside
 * printable ASCII shown as '?'. */
#define PLATFORM_ACTIVE_JOBS_KEPT 4
#define PLATFORM_ACTIVE_TEXT_MAX 64
#define PLATFORM_ACTIVE_DETAIL_MAX 512

typedef struct PlatformActiveJob {
        char job_id[PLATFORM_ACTIVE_TEXT_MAX + 1];
        char status[PLATFORM_ACTIVE_TEXT_MAX + 1];
} PlatformActiveJob;

typedef struct PlatformActive {
        uint32_t n_active;        /* entries in "active": 0 = idle */
        size_t n_jobs;            /* min(n_active, PLATFORM_ACTIVE_JOBS_KEPT) */
        PlatformActiveJob jobs[PLATFORM_ACTIVE_JOBS_KEPT];
} PlatformActive;

typedef struct PlatformActiveResult {
        int error;                /* as above; -EBADMSG for a bad reply */
        const char *message;      /* names the field for -EBADMSG */
        long http_status;
        PlatformActive active;    /* valid when error == 0 */
        /* When error == 0: "no active jobs" or "2 active jobs: a1 (running),
         * b2 (queued)", at most PLATFORM_ACTIVE_DETAIL_MAX bytes. */
        const char *detail;
} PlatformActiveResult;

typedef void (*platform_spec_cb)(PlatformCall *call, PlatformSpecResult *result, void *userdata);
typedef void (*platform_active_cb)(PlatformCall *call, const PlatformActiveResult *result, void *userdata);

/* base_url: "https://api.platform.network" (no trailing path needed). */
int platform_api_new(HttpContext *http, const char *base_url, PlatformApi **ret);
PlatformApi *platform_api_free(PlatformApi *api); /* cancels calls in flight */
static inline void platform_api_freep(PlatformApi **p) {
        if (*p)
                platform_api_free(*p);
}

/* Overrides the document URL (default base_url + PLATFORM_SPEC_PATH). */
int platform_api_set_spec_url(PlatformApi *api, const char *url);
void platform_api_set_timeout(PlatformApi *api, uint64_t usec);
void platform_api_set_max_doc(PlatformApi *api, size_t bytes); /* default API_DOC_MAX */
int platform_api_set_ca_file(PlatformApi *api, const char *path);
/* Forgets ETag/Last-Modified so the next fetch gets the whole document. */
void platform_api_forget_validators(PlatformApi *api);

/* Fetches the document. ETag/Last-Modified are remembered only from a
 * document that parsed, so a 304 always means "the last good one", and only
 * when valid (shared/validate.h), so a hostile one never wedges polling. */
int platform_api_fetch_spec(PlatformApi *api, platform_spec_cb cb, void *userdata, PlatformCall **ret);
int platform_api_fetch_active(PlatformApi *api, platform_active_cb cb, void *userdata, PlatformCall **ret);

/* Safe from any callback; a no-op for the call whose callback is running. */
void platform_call_cancel(PlatformCall *call);

/* {"active":[{"job_id":s,"status":s,"log_url":s?},...]} (unknown fields
 * ignored). Pure. 0, -EBADMSG with *ret_error naming the field, -ENOMEM. */
int platform_parse_active_reply(const char *data, size_t len, PlatformActive *ret, char **ret_error);
/* The detail text of a parsed reply (see PlatformActiveResult.detail) into
 * buf; always NUL-terminated, cut to size. */
void platform_active_format(const PlatformActive *active, char *buf, size_t size);
