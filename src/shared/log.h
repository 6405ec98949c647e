/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "shared/macro.h"

/* The process's one logger. Messages go to stderr (with <N> priority prefixes
 * when stderr is a journal stream) or to the journal directly. Run-time level
 * and target are what org.freedesktop.LogControl1 reads and writes. This is
 * the one piece of I/O the pure layer carries: every layer logs. */

typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_NULL,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -1,
} LogTarget;

void log_setup(const char *identifier);
int log_get_max_level(void);
void log_set_max_level(int level);
LogTarget log_get_target(void);
void log_set_target(LogTarget t);
const char *log_get_identifier(void);

const char *log_level_to_string(int level);
int log_level_from_string(const char *s);
const char *log_target_to_string(LogTarget t);
LogTarget log_target_from_string(const char *s);

/* Returns -abs(error) (or 0 when error is 0), so "return log_error_errno(r, ...)" works. */
int log_internal(int level, int error, const char *file, int line, const char *format, ...) _printf_(5, 6);

/* As log_full, with one more "FIELD=value" journal field (e.g.
 * PLATFORM_LAUNCHER_STEP=build) when the line reaches the journal. */
void log_internal_field(int level, const char *field, const char *file, int line, const char *format, ...)
        _printf_(5, 6);
#define log_full_field(level, field, ...) log_internal_field((level), (field), __FILE__, __LINE__, __VA_ARGS__)

#define log_full_errno(level, error, ...) log_internal((level), (error), __FILE__, __LINE__, __VA_ARGS__)
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)
#define log_oom() log_full_errno(LOG_ERR, ENOMEM, "Out of memory.")

/* Rate limit for a log line a peer can trigger at will: at most burst lines
 * per interval; the first line of the next interval says how many were
 * dropped. Lives in the owner's context, not in a static. */
typedef struct LogRatelimit {
        uint64_t interval_usec;
        unsigned burst;
        uint64_t begin_usec;
        unsigned num;
        unsigned suppressed;
} LogRatelimit;

#define LOG_RATELIMIT_INIT(interval, b) { .interval_usec = (interval), .burst = (b) }

/* true: log now. When a new interval starts after drops, logs the count first. */
bool log_ratelimit_test(LogRatelimit *rl, int level);

#define log_full_ratelimit(rl, level, ...)                                       \
        do {                                                                      \
                if (log_ratelimit_test((rl), (level)))                            \
                        log_full((level), __VA_ARGS__);                           \
        } while (false)
