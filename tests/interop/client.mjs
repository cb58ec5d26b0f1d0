// An independently built Oblivious HTTP client (RFC 9458) for tests/test_interop.py.
// HPKE comes from @hpke/core, binary HTTP (RFC 9292) from bhttp-js, HKDF and the
// response AEAD from node:crypto; nothing is shared with Hushbrief.
//
//   node client.mjs [RELAY_URL] [--path /v1/summarize] [--aead any|aes128gcm|chacha20poly1305]
//                   [--date-skew SECONDS] [--wrong-key-id] [--timeout 30] < body.json
//
// RELAY_URL defaults to $HUSHBRIEF_RELAY_URL. The client
//   1. fetches the key configurations through the relay (GET /.well-known/ohttp-gateway),
//      and parses the application/ohttp-keys list itself (RFC 9458 §3.2);
//   2. builds a binary HTTP POST of the JSON body from stdin, with a Date header (§6.5.1);
//   3. encapsulates it (§4.3) and POSTs it to the relay as message/ohttp-req;
//   4. opens the message/ohttp-res answer (§4.4) and decodes the inner response;
//   5. prints one JSON line: {"status", "headers", "body", "key_id", "kdf_id", "aead_id"}.
// Any failure: a message on stderr and exit status 1 (2 when the relay or gateway refused
// the request in clear, e.g. the §5.3 ohttp-key problem).

import { parseArgs } from "node:util";

import { BHttpDecoder, BHttpEncoder } from "bhttp-js";

import {
  AEADS,
  KDFS,
  KEYS_MEDIA_TYPE,
  KEMS,
  REQUEST_MEDIA_TYPE,
  RESPONSE_MEDIA_TYPE,
  decodeKeyConfigList,
  encapsulateRequest,
  openResponse,
} from "./ohttp.mjs";

const GATEWAY_PATH = "/.well-known/ohttp-gateway";
// The inner request's origin. The gateway serves one origin; bhttp-js needs an absolute
// URL, and ".invalid" can never resolve should it leak anywhere.
const INNER_ORIGIN = "https://gateway.invalid";
const AEAD_NAMES = { aes128gcm: 0x0001, aes256gcm: 0x0002, chacha20poly1305: 0x0003 };

class Refused extends Error {}

function fail(message, code = 1) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(code);
}

function mediaType(response) {
  return (response.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Pick the first configuration (and suite) this client supports, in the gateway's order. */
function chooseConfig(configs, wantedAead) {
  for (const config of configs) {
    if (KEMS[config.kemId] === undefined) continue;
    for (const suite of config.suites) {
      if (KDFS[suite.kdfId] === undefined || AEADS[suite.aeadId] === undefined) continue;
      if (wantedAead !== undefined && suite.aeadId !== wantedAead) continue;
      return { config, suite };
    }
  }
  throw new Error("the gateway offers no key configuration this client supports");
}

async function refusedMessage(response) {
  const text = (await response.text()).slice(0, 500);
  return `the relay answered ${response.status} ${mediaType(response) || "(no content type)"}: ${text}`;
}

async function main() {
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      path: { type: "string", default: "/v1/summarize" },
      aead: { type: "string", default: "any" },
      "date-skew": { type: "string", default: "0" },
      "wrong-key-id": { type: "boolean", default: false },
      timeout: { type: "string", default: "30" },
    },
  });
  const relay = (positionals[0] ?? process.env.HUSHBRIEF_RELAY_URL ?? "").replace(/\/+$/, "");
  if (!relay) throw new Error("no relay URL (argument or HUSHBRIEF_RELAY_URL)");
  let wantedAead;
  if (args.aead !== "any") {
    wantedAead = AEAD_NAMES[args.aead];
    if (wantedAead === undefined) throw new Error(`unknown --aead ${args.aead}`);
  }
  const timeout = () => AbortSignal.timeout(Number(args.timeout) * 1000);
  const body = await readStdin();
  JSON.parse(body.toString("utf8")); // refuse to send something that is not JSON

  // 1. Key configurations, fetched through the relay (RFC 9458 §3.2; RFC 9540 location).
  const keysResponse = await fetch(relay + GATEWAY_PATH, {
    headers: { accept: KEYS_MEDIA_TYPE },
    signal: timeout(),
  });
  if (keysResponse.status !== 200 || mediaType(keysResponse) !== KEYS_MEDIA_TYPE) {
    throw new Refused(await refusedMessage(keysResponse));
  }
  const configs = decodeKeyConfigList(new Uint8Array(await keysResponse.arrayBuffer()));
  let { config, suite } = chooseConfig(configs, wantedAead);
  if (args["wrong-key-id"]) {
    // Test hook: a key id the gateway does not have, to provoke the §5.3 problem.
    const taken = new Set(configs.map((c) => c.keyId));
    let keyId = (config.keyId + 1) % 256;
    while (taken.has(keyId)) keyId = (keyId + 1) % 256;
    config = { ...config, keyId };
  }

  // 2. The inner request in binary HTTP (RFC 9292, known-length form via bhttp-js).
  const date = new Date(Date.now() + Number(args["date-skew"]) * 1000).toUTCString();
  const inner = new Request(INNER_ORIGIN + args.path, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", date },
    body,
  });
  const message = await new BHttpEncoder().encodeRequest(inner);

  // 3. Encapsulate (§4.3) and send through the relay (§5).
  const { encapsulated, context } = await encapsulateRequest(config, suite, message);
  const response = await fetch(relay + GATEWAY_PATH, {
    method: "POST",
    headers: { "content-type": REQUEST_MEDIA_TYPE, accept: RESPONSE_MEDIA_TYPE },
    body: encapsulated,
    signal: timeout(),
  });
  if (response.status !== 200 || mediaType(response) !== RESPONSE_MEDIA_TYPE) {
    throw new Refused(await refusedMessage(response));
  }

  // 4. Open the Encapsulated Response (§4.4) and decode the inner response.
  const opened = await openResponse(context, new Uint8Array(await response.arrayBuffer()));
  const answer = new BHttpDecoder().decodeResponse(opened);
  const text = await answer.text();
  const contentType = (answer.headers.get("content-type") ?? "").split(";")[0].trim();
  let parsed = text;
  if (contentType === "application/json" || contentType.endsWith("+json")) parsed = JSON.parse(text);

  // 5. One JSON line for the test.
  process.stdout.write(`${JSON.stringify({
    status: answer.status,
    headers: Object.fromEntries(answer.headers),
    body: parsed,
    key_id: config.keyId,
    kdf_id: suite.kdfId,
    aead_id: suite.aeadId,
  })}\n`);
}

try {
  await main();
} catch (err) {
  fail(err?.message ?? String(err), err instanceof Refused ? 2 : 1);
}
