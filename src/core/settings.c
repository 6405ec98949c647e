/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/settings.h"
#include "shared/log.h"
#include "shared/validate.h"

int settings_store_new(const char *path, SettingsStore **ret) {
        SettingsStore *s = g_new0(SettingsStore, 1);
        s->path = g_strdup(path);
        s->config = launcher_config_new_default();

        const char *e = getenv("VMM_URL");
        if (!isempty(e)) {
                if (url_is_valid(e))
                        s->vmm_url_override = g_strdup(e);
                else
                        log_warning("Ignoring $VMM_URL: not an http://, https:// or unix:/ URL.");
        }
        *ret = s;
        return 0;
}

void settings_store_free(SettingsStore *s) {
        if (!s)
                return;
        launcher_config_free(s->config);
        g_free(s->path);
        g_free(s->error);
        g_free(s->vmm_url_override);
        g_free(s);
}

static void set_error(SettingsStore *s, char *error) {
        g_free(s->error);
        s->error = error;
}

int settings_store_load(SettingsStore *s) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = read_file_limited(s->path, CONFIG_FILE_MAX, &data, &len);
        if (r == -ENOENT) {
                log_debug("No config file at %s, using defaults.", s->path);
                launcher_config_free(s->config);
                s->config = launcher_config_new_default();
                set_error(s, NULL);
                return 0;
        }
        if (r < 0) {
                set_error(s, g_strdup_printf("%s: cannot be read: %s", s->path, strerror(-r)));
                return log_error_errno(r, "Config file %s cannot be read, keeping the settings in force: %m", s->path);
        }

        struct stat st;
        if (stat(s->path, &st) >= 0 && (st.st_mode & 0077))
                log_warning("Config file %s is accessible by group or others but holds secrets; it will be written 0600.",
                            s->path);

        LauncherConfig *c = NULL;
        char *why = NULL;
        r = launcher_config_parse(data, len, &c, &why);
        explicit_bzero(data, len);
        if (r < 0) {
                set_error(s, g_strdup_printf("%s: %s", s->path, why));
                g_free(why);
                log_error("Config file is invalid, keeping the settings in force and leaving the file alone: %s",
                          s->error);
                return -EINVAL;
        }

        launcher_config_free(s->config);
        s->config = c;
        set_error(s, NULL);
        log_debug("Loaded %s (%zu env values).", s->path, launcher_config_env_count(c));
        return 0;
}

int settings_store_commit(SettingsStore *s, LauncherConfig *c, char **ret_error) {
        if (s->error) {
                *ret_error = g_strdup_printf("Refusing to overwrite the config file: %s. Fix or remove it, then Reload.",
                                             s->error);
                launcher_config_free(c);
                return -EBADMSG;
        }

        char *text = launcher_config_serialize(c);
        int r = write_file_atomic(s->path, text, strlen(text), 0600);
        erase_and_free(text);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot write %s: %s", s->path, strerror(-r));
                log_error_errno(r, "Cannot write %s: %m", s->path);
                launcher_config_free(c);
                return r;
        }

        launcher_config_free(s->config);
        s->config = c;
        return 0;
}

const char *settings_store_vmm_url(const SettingsStore *s) {
        return s->vmm_url_override ?: s->config->vmm_url;
}
