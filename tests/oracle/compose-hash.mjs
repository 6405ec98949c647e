// SPDX-License-Identifier: Apache-2.0
// The dstack SDK's compose hash of app-compose objects: stdin a JSON array of
// objects, stdout a JSON array of getComposeHash(object) (normalize off: the
// VMM hashes the compose_file bytes as sent, so does the launcher).
import { getComposeHash } from "@phala/dstack-sdk/get-compose-hash";

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin)
    input += chunk;
const docs = JSON.parse(input);
process.stdout.write(JSON.stringify(docs.map((d) => getComposeHash(d))) + "\n");
