/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-get: property Get latency over the system bus (DBUS_SYSTEM_BUS_ADDRESS).
 *
 *   bench-get DEST PATH INTERFACE PROPERTY [N [WARMUP [TYPE]]]
 *
 * Calls sd_bus_get_property() N times (after WARMUP unmeasured calls), timing each
 * with CLOCK_MONOTONIC, and prints one JSON line:
 *   {"n":N,"median_us":..,"p99_us":..,"mean_us":..,"min_us":..,"max_us":..,"calls_per_s":..}
 * Not a test and not installed; driven by bench-get.py.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static int get_once(sd_bus *bus, char **argv, const char *type) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_get_property(bus, argv[1], argv[2], argv[3], argv[4], &error, &reply, type);
        if (r < 0)
                fprintf(stderr, "bench-get: Get %s.%s: %s\n", argv[3], argv[4],
                        error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

int main(int argc, char **argv) {
        sd_bus *bus = NULL;
        unsigned long n = 10000, warmup = 200;
        const char *type = "s";
        uint64_t *samples, total = 0, t0, t_all;
        double mean;
        int r;

        if (argc < 5 || argc > 8) {
                fprintf(stderr, "usage: %s DEST PATH INTERFACE PROPERTY [N [WARMUP [TYPE]]]\n", argv[0]);
                return 2;
        }
        if (argc > 5)
                n = strtoul(argv[5], NULL, 10);
        if (argc > 6)
                warmup = strtoul(argv[6], NULL, 10);
        if (argc > 7)
                type = argv[7];
        if (n == 0 || n > 100000000UL) {
                fprintf(stderr, "bench-get: bad N\n");
                return 2;
        }

        r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "bench-get: cannot connect to the system bus: %s\n", strerror(-r));
                return 1;
        }

        samples = calloc(n, sizeof(*samples));
        if (!samples)
                return 1;

        for (unsigned long i = 0; i < warmup; i++)
                if (get_once(bus, argv, type) < 0)
                        return 1;

        t_all = now_ns();
        for (unsigned long i = 0; i < n; i++) {
                t0 = now_ns();
                if (get_once(bus, argv, type) < 0)
                        return 1;
                samples[i] = now_ns() - t0;
                total += samples[i];
        }
        t_all = now_ns() - t_all;

        qsort(samples, n, sizeof(*samples), cmp_u64);
        mean = (double) total / (double) n;
        printf("{\"n\":%lu,\"median_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,"
               "\"min_us\":%.1f,\"max_us\":%.1f,\"calls_per_s\":%.0f}\n",
               n,
               samples[n / 2] / 1000.0,
               samples[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0,
               mean / 1000.0,
               samples[0] / 1000.0,
               samples[n - 1] / 1000.0,
               (double) n * 1e9 / (double) t_all);

        free(samples);
        sd_bus_flush_close_unref(bus);
        return 0;
}
