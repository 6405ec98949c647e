// SPDX-License-Identifier: Apache-2.0
// A decryptor written from the dstack SDK's format (encrypt-env-vars.ts):
//   hex( ephemeral X25519 public key (32) || AES-GCM IV (12) || ciphertext || tag (16) )
//   key = the raw X25519 shared secret (no KDF), no associated data,
//   plaintext = JSON.stringify({env: [{key, value}, ...]}).
// stdin {"private_key": hex, "blobs": [hex, ...]}, stdout a JSON array of
// {"ok": plaintext} or {"error": text}. Uses only @noble/curves and Web
// Crypto, nothing of the launcher's or of Python's.
import { x25519 } from "@noble/curves/ed25519";

function fromHex(h) {
    if (h.length % 2 || /[^0-9a-f]/.test(h))
        throw new Error("not lowercase hex");
    const b = new Uint8Array(h.length / 2);
    for (let i = 0; i < b.length; i++)
        b[i] = parseInt(h.substr(2 * i, 2), 16);
    return b;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin)
    input += chunk;
const req = JSON.parse(input);
const priv = fromHex(req.private_key);
const out = [];
for (const hex of req.blobs) {
    try {
        const blob = fromHex(hex);
        if (blob.length < 32 + 12 + 16)
            throw new Error("too short");
        const shared = x25519.getSharedSecret(priv, blob.subarray(0, 32));
        const key = await crypto.subtle.importKey("raw", shared, { name: "AES-GCM" }, false, ["decrypt"]);
        const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: blob.subarray(32, 44) }, key,
                                                  blob.subarray(44));
        out.push({ ok: new TextDecoder("utf-8", { fatal: true }).decode(plain) });
    } catch (e) {
        out.push({ error: String(e) });
    }
}
process.stdout.write(JSON.stringify(out) + "\n");
