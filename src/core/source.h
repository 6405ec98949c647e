/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clients/http.h"
#include "clients/platform-api.h"

/* Where a VM's spec comes from (source.c). */

typedef struct Source Source;

typedef enum FetchOutcome {
        FETCH_NEW,          /* a new valid document */
        FETCH_SAME,         /* the last good document still holds (304, or equal) */
        FETCH_INVALID,      /* a document that does not validate: spec_error says why */
        FETCH_UNREACHABLE,  /* no document: fetch_error says why */
} FetchOutcome;

typedef void (*source_cb)(Source *s, FetchOutcome outcome, void *userdata);

/* What a file source was when last read: a change is seen without reading. */
typedef struct SourceFileStamp {
        uint64_t dev, ino, size;
        int64_t mtime_nsec, ctime_nsec;
} SourceFileStamp;

struct Source {
        char *url;                  /* the document's URL: http(s)://, or file:///path */
        bool is_api;                /* the Platform API's (it names the VM; errors say "Platform API") */
        char *state_dir;            /* spec.json: the last good document survives a restart */
        PlatformApi *api;           /* conditional GETs */
        char *api_url;
        PlatformCall *call;
        source_cb cb;               /* for call */
        void *cb_userdata;
        PlatformVmSpec *spec;       /* the last valid spec, NULL before the first */
        char *spec_error;           /* the last document was invalid: why (NULL when fine) */
        char *fetch_error;          /* the last fetch failed: why (NULL when fine) */
        uint64_t fetched_usec;      /* CLOCK_MONOTONIC: the last fetch that answered, 0 = never */
        uint64_t fetch_failed_usec; /* first of the current run of failed fetches */
        char *spec_digest;          /* sha256 of the document kept in spec.json */
        SourceFileStamp stamp;      /* file: of the document last read, zero when none */
};

Source *source_new(const char *url, const char *state_dir, bool is_api);
void source_free(Source *s);
/* Follows a changed URL (a settings change): the validators go with the old one. */
int source_set_url(Source *s, HttpContext *http, const char *url);
/* The kept document, at start-up: 0, -ENOENT, or why it cannot be used. */
int source_load_kept(Source *s, char **ret_error);
/* cb fires once, maybe from inside this call (a file source); < 0 when it
 * cannot start. A file source is read only when it changed; it must be a
 * regular file owned by root and writable by no one else, in directories
 * likewise (or root's sticky ones), as sshd's StrictModes. */
int source_fetch(Source *s, HttpContext *http, source_cb cb, void *userdata);
void source_cancel(Source *s);
/* Why there is no spec to apply, or NULL: invalid, never fetched, failing. */
char *source_blocked_reason(const Source *s);

/* The checks of a file source's path, at once (Config.AddVm): NULL when fine,
 * else why not. Caller frees. */
char *source_file_problem(const char *path);
