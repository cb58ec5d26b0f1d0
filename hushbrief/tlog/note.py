"""C2SP signed notes with Ed25519 keys, and transparency-log checkpoints (sans-I/O).

Signed note, https://c2sp.org/signed-note::

    <text, ending in "\\n">
    <blank line>
    — <key name> <base64(4-byte key ID || signature)>     (one or more lines)

* The signature covers the text including its final newline; the text is separated
  from the signatures by the *last* blank line, so the text may hold blank lines.
* The whole note is UTF-8 without ASCII control characters other than newline
  (so no "\\r": a note that went through a CRLF conversion fails loudly).
* Ed25519 (signature type 0x01): key ID = SHA-256(name || "\\n" || 0x01 || public key)[:4].
  Verifier key string ``<name>+<8 hex key ID>+<base64(0x01 || public key)>``; signer key
  string ``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>`` (the
  encodings of Go's golang.org/x/mod/sumdb/note, which the C2SP spec describes).
* Signatures by unknown keys (name and key ID not both matching a known key) are
  ignored; a signature by a known key that fails to verify rejects the whole note; a
  note with no verified signature by a known key is rejected.

Checkpoint, https://c2sp.org/tlog-checkpoint: the note text is the origin line, the tree
size in decimal (no leading zeroes), the base64 RFC 6962 root hash, then optional
non-empty extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from hushbrief.tlog.merkle import HASH_SIZE

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, then a space
MAX_NOTE_BYTES = 256 * 1024
"""Room for the 16 signatures the spec says verifiers must accept, even post-quantum ones
(up to about 5 kB each), with margin; a checkpoint with one Ed25519 signature is ~200 B."""
MAX_SIGNATURES = 100
MAX_TREE_SIZE = (1 << 64) - 1

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_SEED_BYTES = 32
_PUBLIC_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64


class NoteError(ValueError):
    """A note, key string or checkpoint is malformed, or its signatures do not verify."""


def _check_name(name: str, what: str) -> None:
    # C2SP: non-empty, no Unicode spaces, no "+" (the separator of key strings).
    if not name:
        raise NoteError(f"the {what} is empty")
    if "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"the {what} {name!r} contains a space or a plus sign")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteError(f"the {what} {name!r} contains a control character")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte Ed25519 key ID: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()[:4]


def _b64decode(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise NoteError(f"the {what} is not valid base64") from None
    # Accept only the canonical encoding, so that one value has one spelling.
    if base64.b64encode(raw).decode("ascii") != value:
        raise NoteError(f"the {what} is not canonical base64")
    return raw


def _parse_hex_id(value: str, what: str) -> bytes:
    if len(value) != 8:
        raise NoteError(f"the key ID in the {what} is not 8 hexadecimal digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise NoteError(f"the key ID in the {what} is not 8 hexadecimal digits") from None


@dataclass(frozen=True, slots=True)
class Verifier:
    """An Ed25519 note verifier: a key name and public key (with its derived key ID)."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name, "key name")
        if len(self.public_key) != _PUBLIC_BYTES:
            raise NoteError(f"an Ed25519 public key is {_PUBLIC_BYTES} bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def key_string(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """An Ed25519 note signer. Its ``repr`` never shows the seed."""

    __slots__ = ("_private", "name", "public_key")

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name, "key name")
        if len(seed) != _SEED_BYTES:
            raise NoteError(f"an Ed25519 seed is {_SEED_BYTES} bytes")
        self.name = name
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    @property
    def key_string(self) -> str:
        """``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`` — a secret."""
        seed = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        encoded = base64.b64encode(bytes([ALG_ED25519]) + seed).decode("ascii")
        return f"{_PRIVATE_PREFIX}{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def generate_signer(name: str, seed: bytes | None = None) -> tuple[str, str]:
    """A new Ed25519 key: ``(signer key string, verifier key string)``."""
    signer = Signer(name, secrets.token_bytes(_SEED_BYTES) if seed is None else seed)
    return signer.key_string, signer.verifier.key_string


def _split_key(rest: str, what: str) -> tuple[str, bytes, bytes]:
    # The name holds no "+", the ID is hex; the base64 part may hold "+" itself.
    parts = rest.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"the {what} is not of the form name+keyid+base64")
    name, hex_id, encoded = parts
    _check_name(name, f"name in the {what}")
    wanted_id = _parse_hex_id(hex_id, what)
    raw = _b64decode(encoded, f"key in the {what}")
    if not raw or raw[0] != ALG_ED25519:
        raise NoteError(f"the {what} is not an Ed25519 key (signature type 0x01)")
    return name, wanted_id, raw[1:]


def parse_verifier_key(key: str) -> Verifier:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``; NoteError if malformed."""
    key = key.strip()
    name, wanted_id, public_key = _split_key(key, "verifier key")
    if len(public_key) != _PUBLIC_BYTES:
        raise NoteError(f"the verifier key's Ed25519 public key is not {_PUBLIC_BYTES} bytes")
    verifier = Verifier(name, public_key)
    if verifier.key_id != wanted_id:
        raise NoteError("the verifier key's key ID does not match its name and public key")
    return verifier


def parse_signer_key(key: str) -> Signer:
    """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
    key = key.strip()
    if not key.startswith(_PRIVATE_PREFIX):
        raise NoteError("the signer key does not start with PRIVATE+KEY+")
    name, wanted_id, seed = _split_key(key[len(_PRIVATE_PREFIX):], "signer key")
    if len(seed) != _SEED_BYTES:
        raise NoteError(f"the signer key's Ed25519 seed is not {_SEED_BYTES} bytes")
    signer = Signer(name, seed)
    if signer.key_id != wanted_id:
        raise NoteError("the signer key's key ID does not match its name and key")
    return signer


def _check_note_chars(text: str, what: str) -> bytes:
    try:
        raw = text.encode("utf-8")  # fails on lone surrogates
    except UnicodeEncodeError:
        raise NoteError(f"the {what} is not valid UTF-8") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"the {what} is larger than {MAX_NOTE_BYTES} bytes")
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise NoteError(
                f"the {what} contains the control character U+{ord(c):04X} "
                "(only newline is allowed)"
            )
    return raw


def sign_note(text: str, *signers: Signer) -> str:
    """Sign ``text`` (which must end in a newline) with each signer, in order."""
    if not signers:
        raise NoteError("a note needs at least one signer")
    if not text.endswith("\n"):
        raise NoteError("the note text does not end with a newline")
    message = _check_note_chars(text, "note text")
    lines = []
    for signer in signers:
        blob = signer.key_id + signer.sign(message)
        lines.append(f"{SIGNATURE_PREFIX}{signer.name} {base64.b64encode(blob).decode('ascii')}\n")
    note = text + "\n" + "".join(lines)
    _check_note_chars(note, "signed note")
    return note


@dataclass(frozen=True, slots=True)
class _Signature:
    name: str
    key_id: bytes
    signature: bytes


def _parse_note(note: str | bytes) -> tuple[str, list[_Signature]]:
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise NoteError(f"the signed note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("the signed note is not valid UTF-8") from None
    _check_note_chars(note, "signed note")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("the signed note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block:
        raise NoteError("the signed note has no signature lines")
    if not block.endswith("\n"):
        raise NoteError("the signed note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the signed note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"signature line {number} does not start with an em dash and a space")
        name, sep, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not sep or not encoded:
            raise NoteError(f"signature line {number} is not '— <name> <base64>'")
        _check_name(name, f"key name on signature line {number}")
        blob = _b64decode(encoded, f"signature on line {number}")
        if len(blob) < 5:
            raise NoteError(f"the signature on line {number} is too short to hold a key ID")
        signatures.append(_Signature(name, blob[:4], blob[4:]))
    return text, signatures


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names of the keys that signed it.

    Raises NoteError if the note is malformed, if any signature by a known key fails,
    or if no known key signed it (C2SP signed-note §Signatures).
    """
    text, signatures = _parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = text.encode("utf-8")
    verified: list[str] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # unknown keys are ignored: witnesses, rotated keys, other algorithms
        if not verifier.verify(message, sig.signature):
            raise NoteError(f"the signature by {sig.name} does not verify")
        if sig.name not in verified:
            verified.append(sig.name)
    if not verified:
        names = ", ".join(sorted({s.name for s in signatures}))
        raise NoteError(f"the note is not signed by any known key (signed by: {names})")
    return text, verified


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("the checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError("the checkpoint tree size is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise NoteError(f"the checkpoint root hash is not {HASH_SIZE} bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise NoteError("checkpoint extension lines must be non-empty single lines")

    def format(self) -> str:
        """The note text: origin, size and base64 root hash lines, then extensions."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii"),
                 *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (the verified text of :func:`open_note`)."""
        if not text.endswith("\n"):
            raise NoteError("the checkpoint does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("the checkpoint has fewer than three lines")
        origin, size_line, root_line, *extensions = lines
        if not origin:
            raise NoteError("the checkpoint origin line is empty")
        if not (size_line.isascii() and size_line.isdigit()) or (
            size_line.startswith("0") and size_line != "0"
        ):
            raise NoteError("the checkpoint tree size is not a decimal number without "
                            "leading zeroes")
        if len(size_line) > 20 or int(size_line) > MAX_TREE_SIZE:
            raise NoteError("the checkpoint tree size is out of range")
        root = _b64decode(root_line, "checkpoint root hash")
        if any(not line for line in extensions):
            raise NoteError("the checkpoint has an empty extension line")
        return cls(origin, int(size_line), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The checkpoint as a signed note."""
    return sign_note(checkpoint.format(), signer)


def open_checkpoint(note: str | bytes, verifier: Verifier, *, origin: str) -> Checkpoint:
    """Verify a signed checkpoint by ``verifier`` whose origin line is exactly ``origin``.

    Only a signature by ``verifier`` counts (others are ignored, as C2SP requires), and
    the origin is checked because one key could sign checkpoints of several logs.
    """
    text, _ = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(text)
    if checkpoint.origin != origin:
        raise NoteError(
            f"the checkpoint is for the log {checkpoint.origin!r}, not {origin!r}"
        )
    return checkpoint
