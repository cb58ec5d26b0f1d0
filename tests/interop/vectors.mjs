// Test-vector helper for tests/test_interop.py: one operation per run.
//
//   node vectors.mjs MODE < input.json > output.json
//
// All byte strings travel as lowercase hex. Modes:
//   rfc9458       run RFC 9458 Appendix A through this independent implementation
//   keypair       {kem_id, ikm} -> {skR, pkR}: DeriveKeyPair (RFC 9180 §7.1.3)
//   encapsulate   {key_config, kdf_id, aead_id, request, ikm[, encapsulated_response]}
//                 -> {encapsulated_request[, response]}  (RFC 9458 §4.3, §4.4 client side;
//                 the fixed ikm makes the ephemeral key, so a second run with the gateway's
//                 answer rebuilds the same context to open it)
//   decapsulate   {key_config, skR, encapsulated_request, response, response_nonce}
//                 -> {key_id, kdf_id, aead_id, request, encapsulated_response}  (gateway side)
//   bhttp-encode  {kind: "request", method, url, headers, body} | {kind: "response", status,
//                 headers, body} -> {message}  (bhttp-js, RFC 9292 known-length form)
//   bhttp-decode  {kind, message} -> what bhttp-js reads (headers lowercased, body as hex)
// Exit status 1 with a message on stderr on any failure.

import { BHttpDecoder, BHttpEncoder } from "bhttp-js";

import {
  decapsulateRequest,
  decodeKeyConfig,
  encapsulateRequest,
  hex,
  hpkeSuite,
  openResponse,
  requestControlData,
  responseKeys,
  sealResponse,
  unhex,
} from "./ohttp.mjs";

const X25519 = 0x0020;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

function configOf(keyConfigHex) {
  const config = decodeKeyConfig(unhex(keyConfigHex));
  if (config === null) throw new Error("key configuration uses an unsupported KEM");
  return config;
}

/** Import a raw key pair (RFC 9180 §7.1.2 SerializePrivateKey form) as CryptoKeys. */
async function importKeyPair(kemId, skHex, pkHex) {
  const { kem } = hpkeSuite(kemId, 0x0001, 0x0001);
  return {
    privateKey: await kem.importKey("raw", unhex(skHex).buffer, false),
    publicKey: await kem.importKey("raw", unhex(pkHex).buffer, true),
  };
}

function describeConfig(config) {
  return {
    key_id: config.keyId,
    kem_id: config.kemId,
    public_key: hex(config.publicKey),
    suites: config.suites.map((s) => [s.kdfId, s.aeadId]),
  };
}

async function decodeRequest(message) {
  const request = new BHttpDecoder().decodeRequest(message);
  const body = new Uint8Array(await request.arrayBuffer());
  return {
    control: requestControlData(message),
    method: request.method,
    url: request.url,
    headers: Object.fromEntries(request.headers),
    body: hex(body),
  };
}

async function decodeResponse(message) {
  const response = new BHttpDecoder().decodeResponse(message);
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: Object.fromEntries(response.headers), body: hex(body) };
}

const MODES = {
  async rfc9458(v) {
    const config = configOf(v.key_config);
    const suite = { kdfId: v.kdf_id, aeadId: v.aead_id };
    const ekm = await importKeyPair(config.kemId, v.skE, v.pkE);
    const recipientKey = await importKeyPair(config.kemId, v.skR, v.pkR);
    // Client: encapsulate the Appendix A request with the Appendix A ephemeral key.
    const client = await encapsulateRequest(config, suite, unhex(v.request_bhttp), { ekm });
    // Gateway: decapsulate the Appendix A encapsulated request with skR.
    const keys = new Map([[config.keyId, { config, keyPair: recipientKey }]]);
    const gateway = await decapsulateRequest(keys, unhex(v.encapsulated_request));
    const derived = await responseKeys(gateway.context, unhex(v.response_nonce));
    const sealed = await sealResponse(gateway.context, unhex(v.response_bhttp), {
      responseNonce: unhex(v.response_nonce),
    });
    // Client: open the Appendix A encapsulated response with the client's context.
    const opened = await openResponse(client.context, unhex(v.encapsulated_response));
    return {
      key_config: describeConfig(config),
      encapsulated_request: hex(client.encapsulated),
      request_bhttp: hex(gateway.request),
      request: await decodeRequest(gateway.request),
      response_secret_export: hex(derived.secret),
      response_aead_key: hex(derived.key),
      response_aead_nonce: hex(derived.nonce),
      encapsulated_response: hex(sealed),
      response_bhttp: hex(opened),
      response: await decodeResponse(opened),
    };
  },

  async keypair(v) {
    const { kem } = hpkeSuite(v.kem_id ?? X25519, 0x0001, 0x0001);
    const pair = await kem.deriveKeyPair(unhex(v.ikm));
    return {
      skR: hex(new Uint8Array(await kem.serializePrivateKey(pair.privateKey))),
      pkR: hex(new Uint8Array(await kem.serializePublicKey(pair.publicKey))),
    };
  },

  async encapsulate(v) {
    const config = configOf(v.key_config);
    const suite = { kdfId: v.kdf_id, aeadId: v.aead_id };
    const { encapsulated, context } = await encapsulateRequest(config, suite, unhex(v.request), {
      ekm: unhex(v.ikm),
    });
    const out = { encapsulated_request: hex(encapsulated) };
    if (v.encapsulated_response !== undefined) {
      out.response = hex(await openResponse(context, unhex(v.encapsulated_response)));
    }
    return out;
  },

  async decapsulate(v) {
    const config = configOf(v.key_config);
    const { kem } = hpkeSuite(config.kemId, 0x0001, 0x0001);
    const keyPair = {
      privateKey: await kem.importKey("raw", unhex(v.skR).buffer, false),
      publicKey: await kem.deserializePublicKey(config.publicKey),
    };
    const keys = new Map([[config.keyId, { config, keyPair }]]);
    const encapsulated = unhex(v.encapsulated_request);
    const { request, context } = await decapsulateRequest(keys, encapsulated);
    const sealed = await sealResponse(context, unhex(v.response), { responseNonce: unhex(v.response_nonce) });
    return {
      key_id: encapsulated[0],
      kdf_id: context.kdfId,
      aead_id: context.aeadId,
      request: hex(request),
      encapsulated_response: hex(sealed),
    };
  },

  async "bhttp-encode"(v) {
    const headers = new Headers(v.headers ?? []);
    const encoder = new BHttpEncoder();
    if (v.kind === "request") {
      const init = { method: v.method, headers };
      if (v.body !== undefined && v.method !== "GET" && v.method !== "HEAD") init.body = unhex(v.body);
      return { message: hex(await encoder.encodeRequest(new Request(v.url, init))) };
    }
    const body = v.body === undefined ? null : unhex(v.body);
    return { message: hex(await encoder.encodeResponse(new Response(body, { status: v.status, headers }))) };
  },

  async "bhttp-decode"(v) {
    const message = unhex(v.message);
    return v.kind === "request" ? decodeRequest(message) : decodeResponse(message);
  },
};

const mode = process.argv[2];
if (!Object.hasOwn(MODES, mode)) {
  process.stderr.write(`vectors.mjs: unknown mode ${JSON.stringify(mode)}; one of ${Object.keys(MODES).join(", ")}\n`);
  process.exit(64);
}
try {
  const result = await MODES[mode](await readStdin());
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  process.stderr.write(`vectors.mjs ${mode}: ${err?.message ?? err}\n`);
  process.exit(1);
}
