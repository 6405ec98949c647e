/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-floor: the memory floor of platform-launcherd's libraries.
 *
 *   bench-floor [--libs-only]
 *
 * Links the same libraries as the daemon (libsystemd, glib/gobject, json-glib,
 * libcurl, libcrypto) and does the one-time set-up the daemon does with each of
 * them (sd-event loop, system bus connection, curl_global_init + a multi handle,
 * one SHA-256, one JSON parse), then prints "ready" and waits until stdin closes.
 * --libs-only: only load the libraries. bench-reconcile.py reads its VmRSS/Pss
 * next to the daemon's. Not a test and not installed.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-glib/json-glib.h>
#include <openssl/evp.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

int main(int argc, char **argv) {
        sd_event *e = NULL;
        sd_bus *bus = NULL;
        CURLM *multi = NULL;
        JsonParser *parser = NULL;
        char buf[64];

        if (!(argc > 1 && strcmp(argv[1], "--libs-only") == 0)) {
                unsigned char md[EVP_MAX_MD_SIZE];
                unsigned int n;

                if (sd_event_default(&e) < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
                    !(multi = curl_multi_init()) || EVP_Digest("x", 1, md, &n, EVP_sha256(), NULL) != 1) {
                        fprintf(stderr, "bench-floor: set-up failed\n");
                        return 1;
                }
                (void) sd_bus_open_system(&bus); /* no bus is fine: the libraries are what counts */
                parser = json_parser_new();
                (void) json_parser_load_from_data(parser, "{\"vms\":[{\"id\":\"x\",\"status\":\"running\"}]}", -1, NULL);
        }
        printf("ready\n");
        fflush(stdout);
        while (read(STDIN_FILENO, buf, sizeof buf) > 0)
                ;
        if (parser)
                g_object_unref(parser);
        curl_multi_cleanup(multi);
        sd_bus_flush_close_unref(bus);
        sd_event_unref(e);
        return 0;
}
