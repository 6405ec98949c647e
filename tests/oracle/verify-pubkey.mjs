// SPDX-License-Identifier: Apache-2.0
// The dstack SDK's verifier of the KMS's env-encryption key signature
// (verify-env-encrypt-public-key.ts): stdin {"cases": [{"kind": "v1"|"legacy",
// "public_key": hex, "signature": hex, "app_id": hex, "timestamp": n}, ...]},
// stdout a JSON array: the recovered signer (compressed, hex without "0x")
// or null. v1 uses the SDK's default maxAgeSeconds (300) and its 60 s
// future tolerance, against this process's clock.
import { verifyEnvEncryptPublicKey, verifyEnvEncryptPublicKeyLegacy }
    from "@phala/dstack-sdk/verify-env-encrypt-public-key";

console.error = () => {};   // the SDK logs every refusal; the answer is the null

const bytes = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));
let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin)
    input += chunk;
const out = [];
for (const c of JSON.parse(input).cases) {
    const r = c.kind === "v1"
        ? verifyEnvEncryptPublicKey(bytes(c.public_key), bytes(c.signature), c.app_id, BigInt(c.timestamp))
        : verifyEnvEncryptPublicKeyLegacy(bytes(c.public_key), bytes(c.signature), c.app_id);
    out.push(r === null ? null : r.replace(/^0x/, ""));
}
process.stdout.write(JSON.stringify(out) + "\n");
