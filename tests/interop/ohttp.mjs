// Oblivious HTTP (RFC 9458) built only from independent libraries: HPKE (RFC 9180)
// comes from @hpke/core (+ @hpke/chacha20poly1305), HKDF and the response AEAD from
// node:crypto. Nothing here is derived from Hushbrief's Python code: this is the
// "other implementation" the interop tests hold Hushbrief against.
//
// Shared by client.mjs, gateway.mjs and vectors.mjs.

import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DhkemP256HkdfSha256,
  DhkemX25519HkdfSha256,
  HkdfSha256,
  HkdfSha384,
  HkdfSha512,
} from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";

// RFC 9458 media types (§3.2, §4.5).
export const KEYS_MEDIA_TYPE = "application/ohttp-keys";
export const REQUEST_MEDIA_TYPE = "message/ohttp-req";
export const RESPONSE_MEDIA_TYPE = "message/ohttp-res";
// RFC 9458 §5.3: the problem type for "this key configuration is outdated or incorrect";
// §6.5.2: the one for "the Date of the inner request is outside the accepted window".
export const DATE_PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#date";
export const KEY_PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#ohttp-key";

// RFC 9458 §4.3 / §4.4 labels.
const REQUEST_LABEL = "message/bhttp request";
const RESPONSE_LABEL = "message/bhttp response";

// RFC 9180 §7 identifiers, with the sizes RFC 9458 needs (Npk for parsing §3.1,
// Nk/Nn for §4.4) and the node:crypto names used for the response AEAD and HKDF.
export const KEMS = {
  0x0010: { name: "DHKEM(P-256, HKDF-SHA256)", npk: 65, nenc: 65, make: () => new DhkemP256HkdfSha256() },
  0x0020: { name: "DHKEM(X25519, HKDF-SHA256)", npk: 32, nenc: 32, make: () => new DhkemX25519HkdfSha256() },
};
export const KDFS = {
  0x0001: { name: "HKDF-SHA256", digest: "sha256", make: () => new HkdfSha256() },
  0x0002: { name: "HKDF-SHA384", digest: "sha384", make: () => new HkdfSha384() },
  0x0003: { name: "HKDF-SHA512", digest: "sha512", make: () => new HkdfSha512() },
};
export const AEADS = {
  0x0001: { name: "AES-128-GCM", nk: 16, nn: 12, cipher: "aes-128-gcm", make: () => new Aes128Gcm() },
  0x0002: { name: "AES-256-GCM", nk: 32, nn: 12, cipher: "aes-256-gcm", make: () => new Aes256Gcm() },
  0x0003: {
    name: "ChaCha20Poly1305", nk: 32, nn: 12, cipher: "chacha20-poly1305",
    make: () => new Chacha20Poly1305(),
  },
};
const TAG_LENGTH = 16; // all three AEADs above have a 16-byte tag

/** An error whose message is safe to print; `status` is the HTTP status a gateway answers. */
export class OhttpError extends Error {
  constructor(message, { status = 400, keyProblem = false } = {}) {
    super(message);
    this.status = status;
    this.keyProblem = keyProblem;
  }
}

// --- bytes ----------------------------------------------------------------------------------

export const hex = (bytes) => Buffer.from(bytes).toString("hex");
export const unhex = (text) => new Uint8Array(Buffer.from(text, "hex"));
export const utf8 = (text) => new Uint8Array(Buffer.from(text, "utf8"));

export function concat(...parts) {
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
}

function u16(value) {
  return Uint8Array.of((value >> 8) & 0xff, value & 0xff);
}

function readU16(bytes, offset) {
  if (offset + 2 > bytes.length) throw new OhttpError("truncated 16-bit field");
  return (bytes[offset] << 8) | bytes[offset + 1];
}

// --- key configurations (RFC 9458 §3) -------------------------------------------------------

/** Encode one Key Config (RFC 9458 §3.1). */
export function encodeKeyConfig({ keyId, kemId, publicKey, suites }) {
  const algorithms = concat(...suites.map(({ kdfId, aeadId }) => concat(u16(kdfId), u16(aeadId))));
  return concat(Uint8Array.of(keyId), u16(kemId), publicKey, u16(algorithms.length), algorithms);
}

/** Encode an application/ohttp-keys body: each Key Config prefixed by its 2-byte length (§3.2). */
export function encodeKeyConfigList(configs) {
  return concat(...configs.map((c) => {
    const encoded = encodeKeyConfig(c);
    return concat(u16(encoded.length), encoded);
  }));
}

/** Decode one Key Config (§3.1); null if its KEM is one we cannot size (skip it, §3.2). */
export function decodeKeyConfig(bytes) {
  if (bytes.length < 3) throw new OhttpError("key configuration too short");
  const keyId = bytes[0];
  const kemId = readU16(bytes, 1);
  const kem = KEMS[kemId];
  if (kem === undefined) return null;
  let p = 3;
  const publicKey = bytes.slice(p, p + kem.npk);
  if (publicKey.length !== kem.npk) throw new OhttpError("truncated public key");
  p += kem.npk;
  const algorithmsLength = readU16(bytes, p);
  p += 2;
  if (algorithmsLength < 4 || algorithmsLength % 4 !== 0 || p + algorithmsLength !== bytes.length) {
    throw new OhttpError("malformed symmetric algorithms list");
  }
  const suites = [];
  for (let end = p + algorithmsLength; p < end; p += 4) {
    suites.push({ kdfId: readU16(bytes, p), aeadId: readU16(bytes, p + 2) });
  }
  return { keyId, kemId, publicKey, suites };
}

/** Decode an application/ohttp-keys body (§3.2), skipping configurations with unknown KEMs. */
export function decodeKeyConfigList(bytes) {
  const configs = [];
  let p = 0;
  while (p < bytes.length) {
    const length = readU16(bytes, p);
    p += 2;
    if (length === 0 || p + length > bytes.length) throw new OhttpError("malformed key configuration list");
    const config = decodeKeyConfig(bytes.slice(p, p + length));
    if (config !== null) configs.push(config);
    p += length;
  }
  if (configs.length === 0) throw new OhttpError("no usable key configuration");
  return configs;
}

/** The HPKE cipher suite (RFC 9180) for one (KEM, KDF, AEAD) triple. */
export function hpkeSuite(kemId, kdfId, aeadId) {
  const kem = KEMS[kemId];
  const kdf = KDFS[kdfId];
  const aead = AEADS[aeadId];
  if (!kem || !kdf || !aead) throw new OhttpError("unsupported HPKE algorithms", { keyProblem: true });
  return new CipherSuite({ kem: kem.make(), kdf: kdf.make(), aead: aead.make() });
}

// --- request encapsulation (RFC 9458 §4.3) --------------------------------------------------

/** hdr = key_id (1) || kem_id (2) || kdf_id (2) || aead_id (2). */
function requestHeader(keyId, kemId, kdfId, aeadId) {
  return concat(Uint8Array.of(keyId), u16(kemId), u16(kdfId), u16(aeadId));
}

/** info = "message/bhttp request" || 0x00 || hdr. */
function requestInfo(header) {
  return concat(utf8(REQUEST_LABEL), Uint8Array.of(0), header);
}

/**
 * Client side of §4.3. `ekm` (tests only) fixes the ephemeral key: a CryptoKeyPair,
 * or bytes used as DeriveKeyPair's ikm (RFC 9180 §7.1.3).
 * Returns the Encapsulated Request (hdr || enc || ct) and what §4.4 needs to open the answer.
 */
export async function encapsulateRequest(config, { kdfId, aeadId }, request, { ekm } = {}) {
  const suite = hpkeSuite(config.kemId, kdfId, aeadId);
  const header = requestHeader(config.keyId, config.kemId, kdfId, aeadId);
  const recipientPublicKey = await suite.kem.deserializePublicKey(config.publicKey);
  const sender = await suite.createSenderContext({ recipientPublicKey, info: requestInfo(header), ekm });
  const enc = new Uint8Array(sender.enc);
  const ct = new Uint8Array(await sender.seal(request));
  return { encapsulated: concat(header, enc, ct), context: { hpke: sender, enc, aeadId, kdfId } };
}

/**
 * Gateway side of §4.3. `keys` maps key id -> { config, keyPair }. Unknown key ids and
 * algorithm combinations the configuration does not list are `keyProblem` errors (§5.3).
 */
export async function decapsulateRequest(keys, encapsulated) {
  if (encapsulated.length < 7) throw new OhttpError("encapsulated request too short");
  const keyId = encapsulated[0];
  const kemId = readU16(encapsulated, 1);
  const kdfId = readU16(encapsulated, 3);
  const aeadId = readU16(encapsulated, 5);
  const entry = keys.get(keyId);
  if (entry === undefined) throw new OhttpError(`unknown key id ${keyId}`, { keyProblem: true });
  const { config, keyPair } = entry;
  if (kemId !== config.kemId || !config.suites.some((s) => s.kdfId === kdfId && s.aeadId === aeadId)) {
    throw new OhttpError("algorithms not offered by this key configuration", { keyProblem: true });
  }
  const suite = hpkeSuite(kemId, kdfId, aeadId);
  const nenc = KEMS[kemId].nenc;
  if (encapsulated.length < 7 + nenc + TAG_LENGTH) throw new OhttpError("encapsulated request too short");
  const header = encapsulated.slice(0, 7);
  const enc = encapsulated.slice(7, 7 + nenc);
  const ct = encapsulated.slice(7 + nenc);
  let recipient;
  let request;
  try {
    recipient = await suite.createRecipientContext({ recipientKey: keyPair, enc, info: requestInfo(header) });
    request = new Uint8Array(await recipient.open(ct));
  } catch {
    throw new OhttpError("the encapsulated request could not be decrypted");
  }
  return { request, context: { hpke: recipient, enc, aeadId, kdfId }, keyId };
}

// --- response encapsulation (RFC 9458 §4.4) --------------------------------------------------

/**
 * Derive the response AEAD key and nonce (§4.4):
 *   secret = context.Export("message/bhttp response", max(Nn, Nk))
 *   salt   = enc || response_nonce
 *   prk    = Extract(salt, secret); key = Expand(prk, "key", Nk); nonce = Expand(prk, "nonce", Nn)
 * node:crypto's hkdfSync is Extract-then-Expand (RFC 5869), so each call below is
 * Expand(Extract(salt, secret), label, L) with the same PRK.
 */
export async function responseKeys(context, responseNonce) {
  const aead = AEADS[context.aeadId];
  const kdf = KDFS[context.kdfId];
  const length = Math.max(aead.nn, aead.nk);
  if (responseNonce.length !== length) throw new OhttpError("bad response nonce length");
  const secret = new Uint8Array(await context.hpke.export(utf8(RESPONSE_LABEL), length));
  const salt = concat(context.enc, responseNonce);
  const key = new Uint8Array(hkdfSync(kdf.digest, secret, salt, utf8("key"), aead.nk));
  const nonce = new Uint8Array(hkdfSync(kdf.digest, secret, salt, utf8("nonce"), aead.nn));
  return { secret, key, nonce, aead };
}

function aeadOptions(aead) {
  return aead.cipher === "chacha20-poly1305" ? { authTagLength: TAG_LENGTH } : undefined;
}

/** Gateway side of §4.4: response_nonce || Seal(aead_key, aead_nonce, "", response). */
export async function sealResponse(context, response, { responseNonce } = {}) {
  const aead = AEADS[context.aeadId];
  const nonceBytes = responseNonce ?? new Uint8Array(randomBytes(Math.max(aead.nn, aead.nk)));
  const { key, nonce } = await responseKeys(context, nonceBytes);
  const cipher = createCipheriv(aead.cipher, key, nonce, aeadOptions(aead));
  const ct = concat(cipher.update(response), cipher.final(), cipher.getAuthTag());
  return concat(nonceBytes, ct);
}

/** Client side of §4.4: split response_nonce off, derive the keys, open the AEAD. */
export async function openResponse(context, encapsulated) {
  const aead = AEADS[context.aeadId];
  const nonceLength = Math.max(aead.nn, aead.nk);
  if (encapsulated.length < nonceLength + TAG_LENGTH) throw new OhttpError("encapsulated response too short");
  const responseNonce = encapsulated.slice(0, nonceLength);
  const ct = encapsulated.slice(nonceLength, encapsulated.length - TAG_LENGTH);
  const tag = encapsulated.slice(encapsulated.length - TAG_LENGTH);
  const { key, nonce } = await responseKeys(context, responseNonce);
  const decipher = createDecipheriv(aead.cipher, key, nonce, aeadOptions(aead));
  decipher.setAuthTag(tag);
  try {
    return concat(decipher.update(ct), decipher.final());
  } catch {
    throw new OhttpError("the encapsulated response failed its integrity check");
  }
}

// --- binary HTTP helper (RFC 9292 §3.5) ------------------------------------------------------

/**
 * Read a request's control data (method, scheme, authority, path) straight from the
 * message. bhttp-js 0.2.1 turns these into a URL by concatenating scheme://authority+path,
 * which misreads a request with an empty authority (allowed by RFC 9292 §3.5 and used in
 * its own §5 examples): "https:///v1/x" parses as host "v1". Routing uses this instead.
 */
export function requestControlData(message) {
  let p = 0;
  const varint = () => {
    // RFC 9000 §16 variable-length integer, as RFC 9292 §3 uses it.
    if (p >= message.length) throw new OhttpError("truncated binary HTTP message");
    const length = 1 << (message[p] >> 6);
    if (p + length > message.length) throw new OhttpError("truncated binary HTTP message");
    let value = message[p] & 0x3f;
    for (let i = 1; i < length; i += 1) value = value * 256 + message[p + i];
    p += length;
    return value;
  };
  const field = () => {
    const length = varint();
    if (p + length > message.length) throw new OhttpError("truncated binary HTTP message");
    const value = Buffer.from(message.slice(p, p + length)).toString("latin1");
    p += length;
    return value;
  };
  const framing = varint();
  if (framing !== 0 && framing !== 2) throw new OhttpError("not a binary HTTP request");
  return { framing, method: field(), scheme: field(), authority: field(), path: field() };
}
