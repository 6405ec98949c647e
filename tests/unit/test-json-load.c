/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shared/config-file.h"
#include "shared/json-load.h"
#include "shared/macro.h"
#include "tests.h"

static int load(const char *doc, char **ret_error) {
        g_autoptr(JsonParser) p = NULL;
        JsonObject *o = NULL;
        *ret_error = NULL;
        return json_load_object(doc, strlen(doc), 1 << 20, "doc", &p, &o, ret_error);
}

static void refused(const char *doc, const char *want) {
        g_autofree char *why = NULL;
        assert_se(load(doc, &why) == -EINVAL);
        if (!why || !strstr(why, want)) {
                fprintf(stderr, "%s: got '%s', want '%s'\n", doc, strempty(why), want);
                assert_se(false);
        }
}

static void accepted(const char *doc) {
        g_autofree char *why = NULL;
        assert_se(load(doc, &why) == 0 && why == NULL);
}

int main(void) {
        accepted("{}");
        accepted("  {\"a\": {\"b\": 1}, \"c\": [ {\"b\": 2}, {\"b\": 3} ]}\n\n");
        /* One name in two objects is fine; twice in one object is not
         * (json-glib would keep the last and drop every secret before it). */
        accepted("{\"env\": {\"K\": \"v\"}, \"x\": {\"env\": {}}}");
        refused("{\"env\": {\"K\": \"secret-value\"}, \"env\": {}}", "doc: has the member 'env' twice in one object");
        refused("{\"env\": {\"K\": \"a\", \"K\": \"b\"}}", "member 'K' twice");
        refused("{\"env\": {\"pass word\": \"a\", \"pass word\": \"b\"}}", "(a name not shown) twice");
        /* A second document after the first is not ignored silently. */
        refused("{\"env\": {\"K\": \"v\"}} {\"env\": {}}", "doc: has more after its end (byte 20)");
        refused("{}x", "has more after its end");
        refused("{\"a\": \"}\"} ]", "has more after its end");
        accepted("{\"a\": \"} {\"}");

        /* The config file says so with the file's words, and no value. */
        g_autoptr(LauncherConfig) c = NULL;
        g_autofree char *why = NULL;
        const char *cfg = "{\"env\": {\"HOTKEY\": \"hunter2\"}, \"env\": {}}";
        assert_se(launcher_config_parse(cfg, strlen(cfg), &c, &why) == -EINVAL);
        assert_se(why && strstr(why, "'env' twice") && !strstr(why, "hunter2"));
        printf("test-json-load: ok\n");
        return 0;
}
