/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/validate.h"

int main(void) {
        assert(env_key_is_valid("HOTKEY_PASSPHRASE"));
        assert(env_key_is_valid("_x9"));
        assert(!env_key_is_valid(""));
        assert(!env_key_is_valid("9X"));
        assert(!env_key_is_valid("A-B"));
        assert(!env_key_is_valid("A B"));
        assert(!env_key_is_valid("É"));

        char key[300];
        memset(key, 'K', sizeof key);
        key[255] = '\0';
        assert(env_key_is_valid(key));
        key[255] = 'K';
        key[256] = '\0';
        assert(!env_key_is_valid(key));

        char *v = malloc(128 * 1024 + 2);
        memset(v, 'v', 128 * 1024 + 1);
        v[128 * 1024] = '\0';
        assert(env_value_is_valid(v));
        v[128 * 1024] = 'v';
        v[128 * 1024 + 1] = '\0';
        assert(!env_value_is_valid(v));
        free(v);
        assert(env_value_is_valid(""));
        assert(!env_value_is_valid("\xff\xfe"));

        assert(url_is_valid("http://localhost:10300"));
        assert(url_is_valid("https://api.platform.network/config/compose/validator_vm"));
        assert(url_is_valid("http://10.0.2.2:10300/"));
        assert(url_is_valid("http://[::1]:8080/x"));
        assert(url_is_valid("unix:/run/dstack/vmm.sock"));
        assert(!url_is_valid("unix:relative.sock"));
        assert(!url_is_valid("ftp://x"));
        assert(!url_is_valid("http://"));
        assert(!url_is_valid("http://user:pw@host/"));
        assert(!url_is_valid("http://a b/"));
        assert(!url_is_valid("file:///etc/passwd"));
        assert(!url_is_valid(""));

        assert(vm_name_is_valid("validator_vm"));
        assert(vm_name_is_valid("a.b-c (x)"));
        assert(!vm_name_is_valid(""));
        assert(!vm_name_is_valid("a/b"));
        assert(!vm_name_is_valid("a\"b"));
        printf("test-validate: ok\n");
        return 0;
}
