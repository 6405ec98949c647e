// SPDX-License-Identifier: Apache-2.0
// The dstack SDK's env encryption: stdin {"public_key": hex, "cases":
// [[{key, value}, ...], ...]}, stdout a JSON array of encryptEnvVars() hex.
import { encryptEnvVars } from "@phala/dstack-sdk/encrypt-env-vars";

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin)
    input += chunk;
const req = JSON.parse(input);
const out = [];
for (const envs of req.cases)
    out.push(await encryptEnvVars(envs, req.public_key));
process.stdout.write(JSON.stringify(out) + "\n");
