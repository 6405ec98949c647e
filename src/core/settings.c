/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The file on disk is not in force: commits refuse to write over it. */
static void set_error(SettingsStore *s, char *error) {
        g_free(s->error);
        s->error = error;
        s->file_rejected = error != NULL;
}

/* The file is in force; what in it was not understood, if anything, is said (not a reason to refuse it). */
static void set_note(SettingsStore *s, const LauncherConfig *c) {
        g_autofree char *keys = launcher_config_misspelled_keys(c);
        g_free(s->error);
        s->error = keys ? g_strdup_printf("%s: %s", s->path, keys) : NULL;
        s->file_rejected = false;
}

static bool config_holds_anything(const LauncherConfig *c) {
        g_autoptr(LauncherConfig) defaults = launcher_config_new_default();
        return launcher_config_env_count(c) > 0 || json_object_get_size(c->file) > 0 ||
               !launcher_config_equal_settings(c, defaults);
}

static int load_missing(SettingsStore *s) {
        s->file_missing = true;
        if (!config_holds_anything(s->config)) {
                log_debug("No config file at %s, using defaults.", s->path);
                set_error(s, NULL);
                return 0;
        }
        /* Deleting the file is not a way to drop every secret without a trace. */
        set_error(s, g_strdup_printf("%s: is missing; the last good copy stays in force and is written back "
                                     "on the next change", s->path));
        log_error("Config file %s is missing, keeping the settings in force.", s->path);
        return -ENOENT;
}

/* A root daemon loads secrets and URLs only from a file nobody else could have written. */
static int check_owner_and_mode(SettingsStore *s, int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                set_error(s, g_strdup_printf("%s: cannot be read: %s", s->path, strerror(-r)));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                set_error(s, g_strdup_printf("%s: is not a regular file", s->path));
                return -EBADFD;
        }
        if (st.st_uid != geteuid()) {
                set_error(s, g_strdup_printf("%s: is owned by uid %u, not by uid %u; not loaded", s->path,
                                             (unsigned) st.st_uid, (unsigned) geteuid()));
                return -EPERM;
        }
        if (st.st_mode & 0022) {
                set_error(s, g_strdup_printf("%s: is writable by group or others (mode %04o); not loaded", s->path,
                                             (unsigned) (st.st_mode & 07777)));
                return -EPERM;
        }
        if (st.st_mode & 0077) {
                if (fchmod(fd, st.st_mode & 07700) < 0)
                        log_warning_errno(errno, "Config file %s is readable by others and cannot be made 0600: %m",
                                          s->path);
                else
                        log_notice("Config file %s was readable by group or others (mode %04o); made it %04o.",
                                   s->path, (unsigned) (st.st_mode & 07777), (unsigned) (st.st_mode & 07700));
        }
        return 0;
}

int settings_store_load(SettingsStore *s) {
        _cleanup_close_ int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
                return load_missing(s);
        s->file_missing = false;

        int r;
        if (fd < 0) {
                r = -errno;
                set_error(s, g_strdup_printf("%s: cannot be read: %s", s->path, strerror(-r)));
        } else
                r = check_owner_and_mode(s, fd);
        if (r < 0) {
                log_error("Config file is unusable, keeping the settings in force: %s", s->error);
                return r;
        }

        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        r = read_fd_limited(fd, CONFIG_FILE_MAX, &data, &len);
        if (r < 0) {
                set_error(s, r == -EFBIG ? g_strdup_printf("%s: is larger than %u bytes", s->path, CONFIG_FILE_MAX)
                                         : g_strdup_printf("%s: cannot be read: %s", s->path, strerror(-r)));
                return log_error_errno(r, "Config file %s cannot be read, keeping the settings in force: %m", s->path);
        }

        LauncherConfig *c = NULL;
        char *why = NULL;
        r = launcher_config_parse(data, len, &c, &why);
        explicit_bzero(data, len);
        if (r < 0) {
                /* why names a field or a position, never a value: it goes to the bus and the log. */
                set_error(s, g_strdup_printf("%s: %s", s->path, why ?: strerror(-r)));
                g_free(why);
                log_error("Config file is invalid, keeping the settings in force and leaving the file alone: %s",
                          s->error);
                return -EINVAL;
        }

        launcher_config_free(s->config);
        s->config = c;
        set_note(s, c);
        if (s->error)
                log_warning("Config file loaded, with keys it does not know: %s", s->error);
        log_debug("Loaded %s (%zu env values).", s->path, launcher_config_env_count(c));
        return 0;
}

int settings_store_commit(SettingsStore *s, LauncherConfig *c, char **ret_error) {
        /* A missing file is recreated from the copy in force; any other bad file is the operator's to fix. */
        if (s->file_rejected && !s->file_missing) {
                *ret_error = g_strdup_printf("Refusing to overwrite the config file: %s. Fix or remove it, then Reload.",
                                             s->error);
                launcher_config_free(c);
                return -EBADMSG;
        }

        char *text = launcher_config_serialize(c);
        size_t len = strlen(text);
        if (len > CONFIG_FILE_MAX) {
                /* What we write we must be able to read back (escaped control characters take 6 bytes). */
                erase_and_free(text);
                *ret_error = g_strdup_printf("The config file would be %zu bytes, over the %u bytes the launcher reads.",
                                             len, CONFIG_FILE_MAX);
                launcher_config_free(c);
                return -E2BIG;
        }
        int r = write_file_atomic(s->path, text, len, 0600);
        erase_and_free(text);
        if (r < 0) {
                *ret_error = g_strdup_printf("Cannot write %s: %s", s->path, strerror(-r));
                log_error_errno(r, "Cannot write %s: %m", s->path);
                launcher_config_free(c);
                return r;
        }

        launcher_config_free(s->config);
        s->config = c;
        s->file_missing = false;
        set_note(s, c); /* unknown keys are written back as they were: still worth a word */
        return 0;
}

const char *settings_store_vmm_url(const SettingsStore *s) {
        return s->vmm_url_override ?: s->config->vmm_url;
}
