// An independently built Oblivious Gateway Resource (RFC 9458) with its own tiny
// Target Resource, for tests/test_interop.py. HPKE comes from @hpke/core, binary HTTP
// (RFC 9292) from bhttp-js; nothing is shared with Hushbrief.
//
//   node gateway.mjs [--port 0] [--key-id 1] [--suites aes128gcm,chacha20poly1305] [--ikm HEX]
//                    [--window 60]
//
// Listens on 127.0.0.1 only and prints the chosen port as the first line of stdout.
//   GET  /.well-known/ohttp-gateway   application/ohttp-keys (RFC 9458 §3.2)
//   POST /.well-known/ohttp-gateway   message/ohttp-req -> message/ohttp-res (§4.3, §4.4)
//   POST /_interop/rotate             test control: replace the key (new key id)
//   GET  /_interop/stats              test control: counters, as JSON
// The inner (encapsulated) routes: POST /v1/summarize answers a deterministic summary made
// here (the first and the last message as "- speaker: text" lines), engine "interop-js".
// Logs carry statuses and counts, never content.

import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { BHttpDecoder, BHttpEncoder } from "bhttp-js";

import {
  DATE_PROBLEM_TYPE,
  KEY_PROBLEM_TYPE,
  KEYS_MEDIA_TYPE,
  OhttpError,
  REQUEST_MEDIA_TYPE,
  RESPONSE_MEDIA_TYPE,
  decapsulateRequest,
  encodeKeyConfigList,
  hex,
  hpkeSuite,
  requestControlData,
  sealResponse,
  unhex,
} from "./ohttp.mjs";

const GATEWAY_PATH = "/.well-known/ohttp-gateway";
const MAX_REQUEST_BYTES = 17 * 1024 * 1024;
const X25519 = 0x0020;
const HKDF_SHA256 = 0x0001;
const SUITE_NAMES = {
  aes128gcm: { kdfId: HKDF_SHA256, aeadId: 0x0001 },
  aes256gcm: { kdfId: HKDF_SHA256, aeadId: 0x0002 },
  chacha20poly1305: { kdfId: HKDF_SHA256, aeadId: 0x0003 },
};

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    "key-id": { type: "string", default: "1" },
    suites: { type: "string", default: "aes128gcm,chacha20poly1305" },
    ikm: { type: "string" },
    window: { type: "string", default: "60" },
  },
});
const suites = args.suites.split(",").map((name) => {
  const suite = SUITE_NAMES[name.trim()];
  if (suite === undefined) throw new Error(`unknown suite ${name}`);
  return suite;
});
const windowSeconds = Number(args.window);

const stats = {
  requests: 0, summarized: 0, key_errors: 0, decrypt_errors: 0, date_errors: 0, replays: 0,
  key_id: 0,
};
const keys = new Map(); // key id -> { config, keyPair }
const seen = new Map(); // enc (hex) -> time first seen, for §6.5.1 replay rejection

/** Make the one key this gateway serves (an X25519 key pair, RFC 9180 §7.1). */
async function installKey(keyId, ikm) {
  const { kem } = hpkeSuite(X25519, HKDF_SHA256, 0x0001);
  const keyPair = ikm === undefined ? await kem.generateKeyPair() : await kem.deriveKeyPair(unhex(ikm));
  const publicKey = new Uint8Array(await kem.serializePublicKey(keyPair.publicKey));
  keys.clear();
  keys.set(keyId, { config: { keyId, kemId: X25519, publicKey, suites }, keyPair });
  stats.key_id = keyId;
}

// --- the inner Target Resource -------------------------------------------------------------

function json(status, doc, headers = {}) {
  return new Response(JSON.stringify(doc), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function problem(status, type, title, headers = {}) {
  return new Response(JSON.stringify({ type, title }), {
    status,
    headers: { "content-type": "application/problem+json", ...headers },
  });
}

/** The deterministic "summary": first and last message, one "- speaker: text" line each. */
function summarize(doc) {
  const messages = doc?.messages;
  if (doc?.version !== 1 || !Array.isArray(messages) || messages.length === 0) return null;
  if (!messages.every((m) => typeof m?.speaker === "string" && typeof m?.text === "string")) return null;
  const picked = messages.length === 1 ? [messages[0]] : [messages[0], messages[messages.length - 1]];
  return picked.map((m) => `- ${m.speaker}: ${m.text}`).join("\n");
}

/** Answer one decapsulated binary HTTP request with a fetch-API Response. */
async function target(message) {
  let request;
  let control;
  try {
    request = new BHttpDecoder().decodeRequest(message);
    control = requestControlData(message);
  } catch {
    return problem(400, "about:blank", "malformed binary HTTP request");
  }
  // §6.5.1/§6.5.2: refuse a Date outside the window, and say what time it is here.
  const date = Date.parse(request.headers.get("date") ?? "");
  const now = Date.now();
  if (Number.isNaN(date) || Math.abs(now - date) > windowSeconds * 1000) {
    stats.date_errors += 1;
    return problem(400, DATE_PROBLEM_TYPE, "date field in request outside of acceptable range", {
      date: new Date(now).toUTCString(),
    });
  }
  // §5.1: an Encapsulated Response cannot be sent in pieces, so 100-continue is an error.
  if ((request.headers.get("expect") ?? "").toLowerCase().includes("100-continue")) {
    return problem(417, "about:blank", "100-continue cannot be used inside Oblivious HTTP");
  }
  const path = control.path.split("?")[0];
  if (path !== "/v1/summarize") return problem(404, "about:blank", "no such inner resource");
  if (control.method !== "POST") return problem(405, "about:blank", "method not allowed");
  let doc;
  try {
    doc = JSON.parse(await request.text());
  } catch {
    return problem(400, "about:blank", "the body is not JSON");
  }
  const summary = summarize(doc);
  if (summary === null) return problem(422, "about:blank", "not a version 1 summary request");
  stats.summarized += 1;
  return json(200, { version: 1, summary, engine: "interop-js", measurement: "00" });
}

// --- the Oblivious Gateway Resource --------------------------------------------------------

function send(res, status, contentType, body, extra = {}) {
  res.writeHead(status, { "content-type": contentType, "content-length": body.length, ...extra });
  res.end(body);
}

function sendProblem(res, status, type, title) {
  send(res, status, "application/problem+json", Buffer.from(JSON.stringify({ type, title })));
}

function mediaType(req) {
  return (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES) throw new OhttpError("request too large", { status: 413 });
    chunks.push(chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

function forgetOldRequests(now) {
  for (const [enc, at] of seen) {
    if (now - at > 2 * windowSeconds * 1000) seen.delete(enc);
  }
}

async function handleEncapsulated(req, res) {
  if (mediaType(req) !== REQUEST_MEDIA_TYPE) {
    sendProblem(res, 415, "about:blank", `expected ${REQUEST_MEDIA_TYPE}`);
    return;
  }
  stats.requests += 1;
  const body = await readBody(req);
  let opened;
  try {
    opened = await decapsulateRequest(keys, body);
  } catch (err) {
    if (!(err instanceof OhttpError)) throw err;
    // §5.2: errors before the encapsulation is removed are answered in clear;
    // §5.3: an unknown or outdated key configuration gets the ohttp-key problem type.
    if (err.keyProblem) {
      stats.key_errors += 1;
      sendProblem(res, 400, KEY_PROBLEM_TYPE, "key identifier unknown");
    } else {
      stats.decrypt_errors += 1;
      sendProblem(res, 400, "about:blank", "the encapsulated request could not be processed");
    }
    return;
  }
  // §6.5.1: an enc seen within the window is a replay; refuse it (encapsulated, §5.2).
  const now = Date.now();
  forgetOldRequests(now);
  const encHex = hex(opened.context.enc);
  let inner;
  if (seen.has(encHex)) {
    stats.replays += 1;
    inner = problem(400, "about:blank", "replayed request");
  } else {
    seen.set(encHex, now);
    inner = await target(opened.request);
  }
  const message = await new BHttpEncoder().encodeResponse(inner);
  const sealed = await sealResponse(opened.context, message);
  // §4.4 / §5: one 200 carrying the Encapsulated Response, nothing that reveals its content.
  send(res, 200, RESPONSE_MEDIA_TYPE, Buffer.from(sealed), { "cache-control": "private, no-store" });
}

async function handle(req, res) {
  const path = (req.url ?? "/").split("?")[0];
  if (path === GATEWAY_PATH && req.method === "GET") {
    // §3.2: the key configurations this gateway accepts, each length-prefixed.
    const list = encodeKeyConfigList([...keys.values()].map((k) => k.config));
    send(res, 200, KEYS_MEDIA_TYPE, Buffer.from(list), { "cache-control": "max-age=60" });
  } else if (path === GATEWAY_PATH && req.method === "POST") {
    await handleEncapsulated(req, res);
  } else if (path === GATEWAY_PATH) {
    res.setHeader("allow", "GET, POST");
    sendProblem(res, 405, "about:blank", "method not allowed");
  } else if (path === "/_interop/rotate" && req.method === "POST") {
    await installKey((stats.key_id + 1) % 256);
    send(res, 200, "application/json", Buffer.from(JSON.stringify({ key_id: stats.key_id })));
  } else if (path === "/_interop/stats" && req.method === "GET") {
    send(res, 200, "application/json", Buffer.from(JSON.stringify(stats)));
  } else {
    sendProblem(res, 404, "about:blank", "not found");
  }
}

await installKey(Number(args["key-id"]), args.ikm);

const server = createServer((req, res) => {
  handle(req, res)
    .catch((err) => {
      if (err instanceof OhttpError) {
        sendProblem(res, err.status, "about:blank", err.message);
      } else {
        process.stderr.write(`gateway.mjs: internal error: ${err?.message ?? err}\n`);
        if (!res.headersSent) sendProblem(res, 500, "about:blank", "internal error");
        else res.destroy();
      }
    })
    .finally(() => {
      process.stderr.write(`gateway.mjs: ${req.method} ${(req.url ?? "").split("?")[0]} -> ${res.statusCode}\n`);
    });
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}

server.listen(Number(args.port), "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});
