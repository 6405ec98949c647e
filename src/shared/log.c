/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-journal.h>

#include "shared/log.h"

static int max_level = LOG_INFO;
static LogTarget target = LOG_TARGET_AUTO;
static const char *identifier = "platform-launcherd";
static bool stderr_is_journal = false;

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",  [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static const char *const target_names[_LOG_TARGET_MAX] = {
        [LOG_TARGET_AUTO] = "auto",
        [LOG_TARGET_CONSOLE] = "console",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_NULL] = "null",
};

void log_setup(const char *ident) {
        if (ident)
                identifier = ident;
        /* Under systemd stderr is connected to the journal; say so with <N> prefixes. */
        stderr_is_journal = getenv("JOURNAL_STREAM") != NULL;
        const char *e = getenv("PLATFORM_LAUNCHER_LOG_LEVEL");
        if (e && log_level_from_string(e) >= 0)
                max_level = log_level_from_string(e);
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_max_level(int level) {
        max_level = level;
}

LogTarget log_get_target(void) {
        return target;
}

void log_set_target(LogTarget t) {
        target = t;
}

const char *log_get_identifier(void) {
        return identifier;
}

const char *log_level_to_string(int level) {
        if (level < 0 || level > LOG_DEBUG)
                return NULL;
        return level_names[level];
}

int log_level_from_string(const char *s) {
        for (int i = 0; i <= LOG_DEBUG; i++)
                if (streq(s, level_names[i]))
                        return i;
        return -EINVAL;
}

const char *log_target_to_string(LogTarget t) {
        if (t < 0 || t >= _LOG_TARGET_MAX)
                return NULL;
        return target_names[t];
}

LogTarget log_target_from_string(const char *s) {
        for (int i = 0; i < _LOG_TARGET_MAX; i++)
                if (streq(s, target_names[i]))
                        return (LogTarget) i;
        return _LOG_TARGET_INVALID;
}

static void log_write(int level, const char *field, const char *file, int line, const char *buf) {
        /* A field only the journal can carry: such lines go there natively even
         * when stderr is a journal stream (the unit is the same, by cgroup). */
        if (target == LOG_TARGET_JOURNAL || (field && stderr_is_journal && target != LOG_TARGET_CONSOLE))
                sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%i", level, "SYSLOG_IDENTIFIER=%s", identifier,
                                "CODE_FILE=%s", file, "CODE_LINE=%i", line, field ? "%s" : NULL, field, NULL);
        else if (stderr_is_journal)
                fprintf(stderr, "<%i>%s\n", level, buf);
        else
                fprintf(stderr, "%s: %s\n", identifier, buf);
}

int log_internal(int level, int error, const char *file, int line, const char *format, ...) {
        int saved = errno;
        int ret = error == 0 ? 0 : -abs(error);

        if (level > max_level || target == LOG_TARGET_NULL)
                return ret;

        char buf[2048];
        va_list ap;
        va_start(ap, format);
        /* %m in the format means the error passed in, not whatever errno is now. */
        errno = abs(error);
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        log_write(level, NULL, file, line, buf);
        errno = saved;
        return ret;
}

void log_internal_field(int level, const char *field, const char *file, int line, const char *format, ...) {
        int saved = errno;
        if (level > max_level || target == LOG_TARGET_NULL)
                return;
        char buf[2048];
        va_list ap;
        va_start(ap, format);
        vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        log_write(level, field, file, line, buf);
        errno = saved;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

bool log_ratelimit_test(LogRatelimit *rl, int level) {
        if (level > max_level || target == LOG_TARGET_NULL)
                return false;
        uint64_t now = now_usec();
        if (rl->begin_usec == 0 || now - rl->begin_usec >= rl->interval_usec) {
                if (rl->suppressed > 0)
                        log_full(level, "(%u similar messages suppressed)", rl->suppressed);
                rl->begin_usec = now;
                rl->num = 0;
                rl->suppressed = 0;
        }
        if (rl->num < rl->burst) {
                rl->num++;
                return true;
        }
        rl->suppressed++;
        return false;
}
