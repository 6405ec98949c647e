/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Starts a loopback test server (argv[0] is the program) that writes one
 * ready line (its address) to the fd named by "--ready-fd N", which this
 * appends to argv. Waits for that line, without sleeping, into line (newline
 * dropped). The server gets SIGTERM when the test dies. Returns its pid. */
pid_t test_spawn_ready(const char *const *argv, char *line, size_t linesz);
