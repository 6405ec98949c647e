# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the launcher's own integration tests (Config, platformctl)."""
import os
import stat

import harness as H

CONFIGURE = 'org.platform.launcher1.configure'
READ_SECRETS = 'org.platform.launcher1.read-secrets'

ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
INTERACTIVE_REQUIRED = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded'
NOT_FOUND = 'org.platform.Launcher1.Error.NotFound'
INVALID_CONFIG = 'org.platform.Launcher1.Error.InvalidConfig'

# Every secret the tests use carries this marker, so one search of the daemon's
# log finds any leak.
SECRET = 'S3CRET-'

# The Rust launcher's file as it wrote it (serde_json pretty), plus a key of
# someone else's that must survive our writes.
RUST_CONFIG = """{
  "dstack_vmm_url": "http://10.0.2.2:16850/",
  "env": {
    "HOTKEY_PASSPHRASE": "S3CRET-hotkey words here",
    "VALIDATOR_BASE_URL": "https://validator.example"
  },
  "operator_note": {"owner": "ops", "list": [1, 2, 3], "nested": {"x": null}}
}
"""

# (method, signature, args, action) for every privileged Config method.
PRIVILEGED = [
    ('SetEnv', 'ss', ['NEW_KEY', SECRET + 'new'], CONFIGURE),
    ('RemoveEnv', 's', ['VALIDATOR_BASE_URL'], CONFIGURE),
    ('GetEnv', 's', ['HOTKEY_PASSPHRASE'], READ_SECRETS),
    ('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 7000000]}], CONFIGURE),
    ('Reload', None, None, CONFIGURE),
]


def file_state(path):
    """Bytes and mode of a file, to prove nothing changed on disk."""
    with open(path, 'rb') as f:
        data = f.read()
    return data, stat.S_IMODE(os.stat(path).st_mode)


def denied(r):
    return (not r.ok) and r.error_name in (ACCESS_DENIED, INTERACTIVE_REQUIRED)


def assert_no_secret_logged(daemon):
    daemon.assert_not_logged(SECRET)


def properties_changed(bus):
    return bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH,
                       interface='org.freedesktop.DBus.Properties', member='PropertiesChanged')
