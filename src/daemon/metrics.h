/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-event.h>

#include "core/reconciler.h"
#include "core/settings.h"

/* Prometheus text for node_exporter's textfile collector, written atomically
 * to Config.MetricsPath (nothing while it is "", nor while its directory is
 * one someone else could swap: logged once): when the VM changes (at
 * most every METRICS_MIN_INTERVAL_USEC) and every METRICS_REFRESH_USEC for
 * the ages. It sits between the reconciler and the bus layer: it counts what
 * passes and forwards every event unchanged. */
typedef struct Metrics Metrics;

#define METRICS_MIN_INTERVAL_USEC (2 * 1000000ULL)
#define METRICS_REFRESH_USEC (5 * 1000000ULL)

typedef enum MetricsError {
        METRICS_ERROR_API,
        METRICS_ERROR_VMM,
        _METRICS_ERROR_MAX,
} MetricsError;

/* inner: the events to forward (the bus layer's), copied. */
int metrics_new(sd_event *event, SettingsStore *settings, const ReconcilerEvents *inner, Metrics **ret);
void metrics_free(Metrics *mt);
/* The events to give reconciler_new(). */
const ReconcilerEvents *metrics_events(Metrics *mt);
/* The reconciler whose VMs are reported; starts the timer. */
int metrics_start(Metrics *mt, Reconciler *r);

/* Hook for a component that sees each failed request (the API and VMM
 * clients): counts one error. Today the errors are counted from LastError. */
void metrics_count_error(Metrics *mt, MetricsError kind);

/* Hook for the Updater: its lines, appended as they are (main.c sets
 * metrics_updater_section). A callback that appends Prometheus text to s;
 * NULL to remove. */
typedef void (*metrics_section_fn)(GString *s, void *userdata);
void metrics_set_updater_section(Metrics *mt, metrics_section_fn fn, void *userdata);
/* The Updater's section (userdata: the Updater): its state, the deployed
 * commit, whether an update is available, a quarantined commit, LastError and
 * its timestamps. */
void metrics_updater_section(GString *s, void *userdata);

/* Why MetricsPath may not be path (malloc'd: its directory, or one above, is
 * a symbolic link, not root's, or writable by others, see core/safe-dir.h),
 * NULL when it may. A file there is never written: the path could be
 * swapped under the root daemon. */
char *metrics_path_check(const char *path);

/* Renders the metrics text (for tests and the writer). */
char *metrics_render(Metrics *mt, uint64_t now_realtime_usec);
