"""The transparency log: RFC 6962/9162 Merkle proofs, C2SP signed notes and checkpoints,
the file-backed log, its CLI and its HTTP server.

External test data (tests/data/tlog, licences beside the files): transparency-dev/merkle's
proof probes, and a real sum.golang.org checkpoint with the Go toolchain's key for it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hushbrief.evidence.bundle import ReleaseRecord, TransparencyProof
from hushbrief.tlog import merkle
from hushbrief.tlog.cli import add_log_commands, run_log_command
from hushbrief.tlog.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from hushbrief.tlog.note import (
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    Signer,
    generate_signer,
    open_checkpoint,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
)
from hushbrief.tlog.server import build_server, create_app
from hushbrief.tlog.store import LogError, TransparencyLog, init, open_log
from hushbrief.tlog.verify import verify_extension, verify_transparency_proof
from tests.servers import serve, serve_server

DATA = Path(__file__).parent / "data" / "tlog"
PROBES = DATA / "transparency-dev-merkle" / "testdata"
SUMDB = DATA / "sumdb-checkpoint"

# The leaf inputs behind the probes' trees (RFC 6962 reference tests, as in
# transparency-dev/merkle): the root of all eight is XcnaeacG… in the probes.
REFERENCE_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def probes(kind: str) -> list[Any]:
    files = sorted((PROBES / kind).rglob("*.json"))
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(PROBES / kind)))
            for f in files]


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1's recursive definition, to check the fast tree."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


# -- Merkle tree: transparency-dev/merkle probes ---------------------------------------------

INCLUSION_PROBES = probes("inclusion")
CONSISTENCY_PROBES = probes("consistency")


def test_all_probes_are_found() -> None:
    assert len(INCLUSION_PROBES) == 98
    assert len(CONSISTENCY_PROBES) == 98


@pytest.mark.parametrize("probe", INCLUSION_PROBES)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    args = (b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"],
            [b64(h) for h in probe["proof"] or []], b64(probe["root"]))
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES)
def test_consistency_probe(probe: dict[str, Any]) -> None:
    args = (probe["size1"], probe["size2"], [b64(h) for h in probe["proof"] or []],
            b64(probe["root1"]), b64(probe["root2"]))
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_generated_proofs_equal_the_reference_proofs() -> None:
    tree = MerkleTree(leaf_hash(leaf) for leaf in REFERENCE_LEAVES)
    assert tree.root() == b64("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
    for path in sorted(PROBES.glob("inclusion/*/happy-path.json")):
        p = json.loads(path.read_text())
        assert tree.root(p["treeSize"]) == b64(p["root"])
        assert tree.leaf(p["leafIdx"]) == b64(p["leafHash"])
        assert tree.inclusion_proof(p["leafIdx"], p["treeSize"]) == [
            b64(h) for h in p["proof"] or []]
    for path in sorted(PROBES.glob("consistency/*/happy-path.json")):
        p = json.loads(path.read_text())
        assert (tree.root(p["size1"]), tree.root(p["size2"])) == (b64(p["root1"]),
                                                                  b64(p["root2"]))
        assert tree.consistency_proof(p["size1"], p["size2"]) == [
            b64(h) for h in p["proof"] or []]


def test_hashing_and_empty_tree() -> None:
    assert EMPTY_ROOT.hex() == ("e3b0c44298fc1c149afbf4c8996fb924"
                                "27ae41e4649b934ca495991b7852b855")
    assert MerkleTree().root() == EMPTY_ROOT == root_from_leaves([])
    assert leaf_hash(b"") != node_hash(b"", b"")  # domain separation of leaves and nodes


def test_tree_argument_errors() -> None:
    tree = MerkleTree([leaf_hash(b"a"), leaf_hash(b"b")])
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"short")
    with pytest.raises(ValueError, match="beyond"):
        tree.root(3)
    with pytest.raises(ValueError, match="not in a tree"):
        tree.inclusion_proof(2, 2)
    with pytest.raises(ValueError, match="0 < old size"):
        tree.consistency_proof(0, 2)
    assert tree.consistency_proof(2, 2) == []


def test_verifier_edge_cases() -> None:
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(5))
    leaf, root = tree.leaf(3), tree.root()
    proof = tree.inclusion_proof(3, 5)
    verify_inclusion(leaf, 3, 5, proof, root)
    with pytest.raises(ProofError, match="not in a tree"):
        verify_inclusion(leaf, 5, 5, proof, root)
    with pytest.raises(ProofError, match="longer"):
        verify_inclusion(leaf, 3, 5, [*proof, proof[0]], root)
    with pytest.raises(ProofError, match="shorter"):
        verify_inclusion(leaf, 3, 5, proof[:-1], root)
    with pytest.raises(ProofError, match="more than any tree needs"):
        verify_inclusion(leaf, 3, 5, [proof[0]] * 65, root)
    with pytest.raises(ProofError, match="negative"):
        verify_inclusion(leaf, -1, 5, proof, root)
    verify_consistency(3, 3, [], tree.root(3), tree.root(3))
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 5, [], EMPTY_ROOT, root)
    with pytest.raises(ProofError, match="equal tree sizes must be empty"):
        verify_consistency(3, 3, [root], tree.root(3), tree.root(3))
    with pytest.raises(ProofError, match="larger than"):
        verify_consistency(5, 3, [], root, tree.root(3))


# -- Merkle tree: properties -------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


def _tampered(proof: list[bytes], i: int) -> list[bytes]:
    changed = list(proof)
    changed[i] = bytes([changed[i][0] ^ 0x01]) + changed[i][1:]
    return changed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leaf_lists)
def test_every_inclusion_proof_verifies_and_every_tamper_fails(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaf_hash(x) for x in leaves)
    for size in range(1, len(leaves) + 1):
        root = tree.root(size)
        assert root == reference_mth(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            verify_inclusion(tree.leaf(index), index, size, proof, root)
            for i in range(len(proof)):
                with pytest.raises(ProofError):
                    verify_inclusion(tree.leaf(index), index, size, _tampered(proof, i), root)
            with pytest.raises(ProofError):
                verify_inclusion(leaf_hash(b"other" + leaves[index]), index, size, proof, root)
            wrong_root = bytes([root[0] ^ 0x80]) + root[1:]
            with pytest.raises(ProofError):
                verify_inclusion(tree.leaf(index), index, size, proof, wrong_root)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leaf_lists)
def test_every_consistency_proof_verifies_and_every_tamper_fails(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaf_hash(x) for x in leaves)
    for new in range(1, len(leaves) + 1):
        for old in range(1, new + 1):
            proof = tree.consistency_proof(old, new)
            old_root, new_root = tree.root(old), tree.root(new)
            verify_consistency(old, new, proof, old_root, new_root)
            for i in range(len(proof)):
                with pytest.raises(ProofError):
                    verify_consistency(old, new, _tampered(proof, i), old_root, new_root)
            if old < new:
                with pytest.raises(ProofError):
                    verify_consistency(old, new, proof, _tampered([old_root], 0)[0], new_root)
                with pytest.raises(ProofError):
                    verify_consistency(old, new, proof, old_root, _tampered([new_root], 0)[0])
                with pytest.raises(ProofError):
                    verify_consistency(old, new, proof[:-1], old_root, new_root)
                with pytest.raises(ProofError):
                    verify_consistency(old, new, [*proof, new_root], old_root, new_root)


@settings(max_examples=25, deadline=None)
@given(leaf_lists, leaf_lists, st.data())
def test_a_rewritten_history_fails_consistency(
    common: list[bytes], tail: list[bytes], data: st.DataObject
) -> None:
    # Two trees that agree on a prefix and then differ at one leaf inside the old size.
    honest = [*common, *tail]
    old = data.draw(st.integers(1, len(honest)), label="old")
    changed_at = data.draw(st.integers(0, old - 1), label="changed_at")
    forked = list(honest)
    forked[changed_at] = b"forged" + forked[changed_at]
    a = MerkleTree(leaf_hash(x) for x in honest)
    b = MerkleTree(leaf_hash(x) for x in forked)
    new = len(honest)
    with pytest.raises(ProofError):
        verify_consistency(old, new, b.consistency_proof(old, new), a.root(old), b.root(new))


# -- Signed notes -------------------------------------------------------------------------------

# The example in the documentation of Go's golang.org/x/mod/sumdb/note (BSD-3-Clause).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = ("If you think cryptography is the answer to your problem,\n"
              "then you don't know what your problem is.\n")
PETER_NOTE = PETER_TEXT + ("\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIu"
                           "GUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def test_go_note_known_answer() -> None:
    signer = parse_signer_key(PETER_SKEY)
    assert signer.verifier.key_string == PETER_VKEY
    assert signer.key_string == PETER_SKEY
    assert sign_note(PETER_TEXT, signer) == PETER_NOTE
    assert open_note(PETER_NOTE, [parse_verifier_key(PETER_VKEY)]) == (PETER_TEXT,
                                                                        ["PeterNeumann"])
    assert "AYEKFALV" not in repr(signer)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(PETER_NOTE.replace("cryptography", "cryptographY"),
                  [parse_verifier_key(PETER_VKEY)])


def sumdb() -> tuple[str, str]:
    return ((SUMDB / "checkpoint_31700353.txt").read_text("utf-8"),
            (SUMDB / "sum.golang.org.vkey").read_text("utf-8"))


def test_sumdb_checkpoint_verifies() -> None:
    note, vkey = sumdb()
    verifier = parse_verifier_key(vkey)
    assert verifier.name == "sum.golang.org"
    cp = open_checkpoint(note, verifier, origin="go.sum database tree")
    assert cp.size == 31700353
    assert cp.root_hash == b64("qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=")
    assert cp.extensions == ()
    assert cp.format() == open_note(note, [verifier])[0]
    with pytest.raises(NoteError, match="not 'other'"):
        open_checkpoint(note, verifier, origin="other")


def test_sumdb_checkpoint_fails_when_any_byte_changes() -> None:
    note, vkey = sumdb()
    verifier = parse_verifier_key(vkey)
    raw = note.encode("utf-8")
    for i in range(len(raw)):
        changed = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:]
        with pytest.raises(NoteError):
            open_checkpoint(changed, verifier, origin="go.sum database tree")
    with pytest.raises(NoteError):
        open_checkpoint(raw[:-1], verifier, origin="go.sum database tree")
    with pytest.raises(NoteError):
        open_checkpoint(note.replace("\n", "\r\n"), verifier, origin="go.sum database tree")


def test_verifier_keys() -> None:
    _, vkey = sumdb()
    with pytest.raises(NoteError, match="key ID does not match"):
        parse_verifier_key(vkey.replace("sum.golang.org+", "sum.golang.org2+"))
    with pytest.raises(NoteError, match="8 hexadecimal"):
        parse_verifier_key(vkey.replace("+033de0ae+", "+033de0a+"))
    with pytest.raises(NoteError, match="form name"):
        parse_verifier_key("name-only")
    with pytest.raises(NoteError, match="Ed25519"):
        parse_verifier_key("x+00000000+" + base64.b64encode(b"\x02" + bytes(32)).decode())
    with pytest.raises(NoteError, match="space or a plus"):
        generate_signer("two words")
    # The Go note package's test key pair.
    betty = parse_signer_key(
        "PRIVATE+KEY+Test-Betty+df84580a+Afge8kCzBXU7jb3cV2Q363oNXCufJ6u9mjOY1BGRY9E2")
    assert betty.verifier.key_string == (
        "Test-Betty+df84580a+AQQASqPUZoIHcJAF5mBOryctwFdTV1E0GRY4kEAtTzwB")


def test_generated_keys_round_trip() -> None:
    skey, vkey = generate_signer("example.com/log", seed=bytes(range(32)))
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    signer, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert signer.verifier == verifier
    assert generate_signer("example.com/log", seed=bytes(range(32))) == (skey, vkey)
    assert generate_signer("example.com/log")[1] != vkey


def _signer(name: str, n: int = 1) -> Signer:
    return Signer(name, bytes([n]) * 32)


def test_open_note_signature_rules() -> None:
    log, witness, stranger = _signer("log"), _signer("witness", 2), _signer("stranger", 3)
    text = "hello\n\nworld\n"  # a text may hold blank lines: the last one separates
    note = sign_note(text, log, witness, stranger)
    assert open_note(note, [log.verifier, witness.verifier]) == (text, ["log", "witness"])
    # Unknown keys are ignored...
    assert open_note(note, [witness.verifier])[1] == ["witness"]
    # ...but a note with only unknown signatures is an error,
    with pytest.raises(NoteError, match="not signed by any known key"):
        open_note(note, [_signer("other", 4).verifier])
    # and so is a bad signature by a known key, whatever else verifies.
    lines = note.split("\n")
    bad_sig = sign_note("other text\n", witness).split("\n")[-2]
    forged = "\n".join([*lines[:-3], bad_sig, *lines[-2:]])
    assert forged.count("— witness") == 1
    with pytest.raises(NoteError, match="by witness does not verify"):
        open_note(forged, [log.verifier, witness.verifier])
    # Same name, other key (so another key ID): an unknown key, ignored.
    impostor = _signer("log", 9)
    assert open_note(sign_note(text, impostor, log), [log.verifier])[1] == ["log"]


@pytest.mark.parametrize(("note", "message"), [
    ("hello\n— log AAAA\n", "no blank line"),
    ("hello\n\n", "no signature lines"),
    ("hello\n\n— log AAAAAAA=", "does not end with a newline"),
    ("hello\n\n-- log AAAAAAA=\n", "em dash"),
    ("hello\n\n— log\n", "'— <name> <base64>'"),
    ("hello\n\n— l+g AAAAAAA=\n", "space or a plus"),
    ("hello\n\n— log AAAA\n", "too short"),
    ("hello\n\n— log AAAAAAB=\n", "not canonical"),
    ("hello\n\n— log AA!AAAA=\n", "not valid base64"),
    ("hel\rlo\n\n— log AAAAAAA=\n", "control character U\\+000D"),
    ("hello\t\n\n— log AAAAAAA=\n", "control character U\\+0009"),
    ("hello\n\n" + "— log AAAAAAA=\n" * (MAX_SIGNATURES + 1), "more than 100"),
    ("x" * (300 * 1024) + "\n\n— log AAAAAAA=\n", "larger than"),
])
def test_malformed_notes(note: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        open_note(note, [_signer("log").verifier])


def test_open_note_accepts_bytes_and_rejects_bad_utf8() -> None:
    verifier = parse_verifier_key(PETER_VKEY)
    assert open_note(PETER_NOTE.encode(), [verifier])[0] == PETER_TEXT
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff\n\n" + PETER_NOTE.encode().split(b"\n\n")[1], [verifier])


def test_sign_note_refuses_bad_text() -> None:
    signer = _signer("log")
    with pytest.raises(NoteError, match="newline"):
        sign_note("no newline", signer)
    with pytest.raises(NoteError, match="control"):
        sign_note("a\rb\n", signer)
    with pytest.raises(NoteError, match="at least one signer"):
        sign_note("a\n")


# -- Checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_format_parse_and_sign() -> None:
    signer = _signer("example.com/log")
    cp = Checkpoint("example.com/log", 7, bytes(range(32)), ("ext one",))
    text = cp.format()
    assert text == ("example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                    "ext one\n")
    assert Checkpoint.parse(text) == cp
    note = sign_checkpoint(cp, signer)
    assert open_checkpoint(note, signer.verifier, origin="example.com/log") == cp
    with pytest.raises(NoteError, match="not signed by any known key"):
        open_checkpoint(note, _signer("example.com/log", 2).verifier,
                        origin="example.com/log")


@pytest.mark.parametrize(("text", "message"), [
    ("o\n1\n", "fewer than three"),
    ("o\n01\n" + "A" * 43 + "=\n", "leading zeroes"),
    ("o\n-1\n" + "A" * 43 + "=\n", "decimal"),
    ("o\n١\n" + "A" * 43 + "=\n", "decimal"),
    ("o\n18446744073709551616\n" + "A" * 43 + "=\n", "out of range"),
    ("o\n1\nAAAA\n", "32 bytes"),
    ("o\n1\n" + "A" * 43 + "=\n\n", "empty extension"),
    ("\n1\n" + "A" * 43 + "=\n", "origin line is empty"),
    ("o\n1\n" + "A" * 43 + "=", "newline"),
])
def test_malformed_checkpoints(text: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        Checkpoint.parse(text)


def test_checkpoint_of_size_zero() -> None:
    cp = Checkpoint.parse("o\n0\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n")
    assert (cp.size, cp.root_hash) == (0, EMPTY_ROOT)


# -- The log directory -----------------------------------------------------------------------------

ORIGIN = "log.example/hushbrief"


def record(n: int, platform: str = "sev-snp", version: str | None = None) -> ReleaseRecord:
    return ReleaseRecord(measurement=f"{n:02x}" * 48, platform=platform,
                         version=version or f"1.{n}.0", source=f"git+https://x/{n}")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def tlog(log_dir: Path) -> TransparencyLog:
    return init(log_dir, ORIGIN)


def test_init_files_and_permissions(tlog: TransparencyLog, log_dir: Path) -> None:
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in log_dir.iterdir()}
    assert mode == {"log.key": 0o600, "log.pub": 0o644, "records.jsonl": 0o644}
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    pub = (log_dir / "log.pub").read_text()
    assert pub == tlog.verifier.key_string + "\n"
    assert parse_verifier_key(pub).name == ORIGIN == tlog.origin
    assert (log_dir / "log.key").read_text().startswith("PRIVATE+KEY+" + ORIGIN + "+")
    assert tlog.size == 0
    cp = open_checkpoint(tlog.checkpoint(), tlog.verifier, origin=ORIGIN)
    assert (cp.size, cp.root_hash) == (0, EMPTY_ROOT)


def test_init_refuses_existing_or_non_empty_directories(tlog: TransparencyLog,
                                                       log_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LogError, match="not empty"):
        init(log_dir, ORIGIN)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    with pytest.raises(LogError, match="not empty"):
        init(tmp_path / "other", ORIGIN)
    (tmp_path / "empty").mkdir(mode=0o755)
    init(tmp_path / "empty", ORIGIN)
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) == 0o700
    with pytest.raises(LogError, match="space or a plus"):
        init(tmp_path / "bad", "a b")


def test_add_checkpoint_prove_round_trip(tlog: TransparencyLog, log_dir: Path) -> None:
    for n in range(5):
        assert tlog.add(record(n)) == n
    proof = tlog.prove(record(3).measurement, "sev-snp")
    assert (proof.record, proof.index) == (record(3), 3)
    cp = verify_transparency_proof(proof, parse_verifier_key((log_dir / "log.pub").read_text()),
                                   origin=ORIGIN)
    assert (cp.size, cp.root_hash) == (5, tlog.root())
    # It survives the bundle's JSON, and a reopened log rebuilds the same tree.
    again = TransparencyProof.from_json(json.loads(json.dumps(proof.to_json())))
    assert again == proof
    reopened = open_log(log_dir)
    assert (reopened.size, reopened.root()) == (5, tlog.root())
    assert reopened.checkpoint() == tlog.checkpoint()  # Ed25519 is deterministic
    lines = (log_dir / "records.jsonl").read_bytes().split(b"\n")
    assert lines[:-1] == [record(n).leaf() for n in range(5)] and lines[-1] == b""


def test_prove_newest_record_and_past_sizes(tlog: TransparencyLog) -> None:
    tlog.add(record(1, version="1.0"))
    tlog.add(record(2))
    tlog.add(record(1, version="1.0-rebuild"))
    tlog.add(record(1, platform="tdx"))
    assert tlog.prove(record(1).measurement.upper(), "sev-snp").index == 2
    old = tlog.prove(record(1).measurement, "sev-snp", size=2)
    assert old.index == 0
    assert verify_transparency_proof(old, tlog.verifier, origin=ORIGIN).size == 2
    with pytest.raises(LogError, match="No record for measurement"):
        tlog.prove(record(2).measurement, "nitro")
    with pytest.raises(LogError, match="not between 1 and 4"):
        tlog.prove(record(1).measurement, "sev-snp", size=5)


def test_empty_log_refuses_proofs(tlog: TransparencyLog) -> None:
    with pytest.raises(LogError, match="no records yet"):
        tlog.prove("00", "dev")
    with pytest.raises(LogError, match="no records yet"):
        tlog.consistency(1)


def test_duplicates_and_invalid_records_are_refused(tlog: TransparencyLog) -> None:
    tlog.add(record(1))
    with pytest.raises(LogError, match=r"already in .*records\.jsonl"):
        tlog.add(record(1))
    bad = [ReleaseRecord("ABCD", "dev", "1", "s"), ReleaseRecord("abc", "dev", "1", "s"),
           ReleaseRecord("ab", "sgx", "1", "s"), ReleaseRecord("ab", "dev", "", "s"),
           ReleaseRecord("ab", "dev", "1", "line\nbreak")]
    for r in bad:
        with pytest.raises(LogError):
            tlog.add(r)
    assert tlog.size == 1


def test_consistency_across_growth(tlog: TransparencyLog) -> None:
    tlog.add(record(0))
    first = open_checkpoint(tlog.checkpoint(), tlog.verifier, origin=ORIGIN)
    for n in range(1, 11):
        tlog.add(record(n))
    latest = open_checkpoint(tlog.checkpoint(), tlog.verifier, origin=ORIGIN)
    verify_extension(first, latest, tlog.consistency(first.size, latest.size))
    assert tlog.consistency(4, 4) == []
    empty = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    verify_extension(empty, latest, [])
    with pytest.raises(LogError, match="0 < old <= new"):
        tlog.consistency(0)
    with pytest.raises(LogError, match="not between 1 and 11"):
        tlog.consistency(1, 12)


def test_a_fork_with_the_same_key_is_caught(tlog: TransparencyLog, log_dir: Path,
                                            tmp_path: Path) -> None:
    for n in range(3):
        tlog.add(record(n))
    shutil.copytree(log_dir, tmp_path / "fork")
    fork = open_log(tmp_path / "fork")
    tlog.add(record(10))  # what one client sees
    fork.add(record(20))  # what another sees: same key, same first three records
    fork.add(record(21))
    seen = open_checkpoint(tlog.checkpoint(), tlog.verifier, origin=ORIGIN)
    offered = open_checkpoint(fork.checkpoint(), tlog.verifier, origin=ORIGIN)  # signs fine
    with pytest.raises(ProofError):
        verify_extension(seen, offered, fork.consistency(seen.size, offered.size))
    # The honest history does extend the common prefix.
    common = open_checkpoint(fork.checkpoint(3), tlog.verifier, origin=ORIGIN)
    verify_extension(common, seen, tlog.consistency(3, 4))
    verify_extension(common, offered, fork.consistency(3, 5))


def test_other_writers_are_followed(tlog: TransparencyLog, log_dir: Path) -> None:
    other = open_log(log_dir)  # as if another process
    assert tlog.add(record(1)) == 0
    assert other.add(record(2)) == 1  # sees record 1 first, under the lock
    with pytest.raises(LogError, match="already in"):
        other.add(record(1))
    assert tlog.refresh() == 2
    assert tlog.root() == other.root()


def test_partial_last_line_is_ignored_then_repaired(tlog: TransparencyLog,
                                                    log_dir: Path) -> None:
    tlog.add(record(1))
    with (log_dir / "records.jsonl").open("ab") as f:
        f.write(record(2).leaf()[:20])  # a crashed add
    reader = open_log(log_dir)
    assert reader.size == 1
    assert tlog.add(record(3)) == 1
    assert open_log(log_dir).records() == [record(1), record(3)]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b.replace(b'"platform"', b' "platform"'), "not in canonical form"),
    (lambda b: b.replace(b"1.1.0", b"9.9.9"), None),  # still valid; root changes
    (lambda b: b + b"not json\n", "Line 3 .* not a release record"),
    (lambda b: b + b.split(b"\n")[0] + b"\n", "Line 3 .* repeats"),
    (lambda b: b + b'{"measurement":"XY","platform":"dev","source":"s","version":"1"}\n',
     "Line 3 .* invalid"),
])
def test_damaged_records_file(tlog: TransparencyLog, log_dir: Path,
                              damage: Callable[[bytes], bytes], message: str | None) -> None:
    tlog.add(record(1))
    tlog.add(record(2))
    path = log_dir / "records.jsonl"
    path.write_bytes(damage(path.read_bytes()))
    if message is None:
        assert open_log(log_dir).root() != tlog.root()
    else:
        with pytest.raises(LogError, match=message):
            open_log(log_dir)


def test_truncated_or_replaced_records_are_noticed(tlog: TransparencyLog,
                                                   log_dir: Path) -> None:
    tlog.add(record(1))
    tlog.add(record(2))
    path = log_dir / "records.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") + 1])
    with pytest.raises(LogError, match="shrank"):
        tlog.refresh()
    reader = open_log(log_dir)
    replacement = log_dir / "new.jsonl"
    replacement.write_bytes(data)
    os.replace(replacement, path)
    with pytest.raises(LogError, match="replaced"):
        reader.refresh()


def test_key_file_checks(tlog: TransparencyLog, log_dir: Path, tmp_path: Path) -> None:
    key = log_dir / "log.key"
    key.chmod(0o640)
    with pytest.raises(LogError, match=r"accessible by group or others.*chmod 600"):
        open_log(log_dir)
    key.chmod(0o600)
    (log_dir / "log.pub").write_text(generate_signer(ORIGIN)[1] + "\n")
    with pytest.raises(LogError, match="does not belong"):
        open_log(log_dir)
    secret = key.read_text()
    moved = tmp_path / "elsewhere.key"
    key.rename(moved)
    key.symlink_to(moved)
    with pytest.raises(LogError, match="cannot be opened"):
        open_log(log_dir)
    key.unlink()
    key.write_text("PRIVATE+KEY+garbage")
    key.chmod(0o600)
    with pytest.raises(LogError, match="does not hold a signer key") as caught:
        open_log(log_dir)
    assert secret.split("+")[-1] not in str(caught.value)
    with pytest.raises(LogError, match="does not exist"):
        open_log(tmp_path / "missing")


# -- CLI -----------------------------------------------------------------------------------------

def cli(*argv: object) -> int:
    parser = argparse.ArgumentParser(prog="hushbrief")
    add_log_commands(parser.add_subparsers(dest="command", required=True))
    return run_log_command(parser.parse_args(["log", *map(str, argv)]))


def test_cli_round_trip(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("init", log_dir, "--origin", ORIGIN) == 0
    out, err = capsys.readouterr()
    verifier = parse_verifier_key(out)
    assert out == (log_dir / "log.pub").read_text() and "pin" in err
    measurement = "AB" * 48
    for version in ("1.0", "1.1"):
        assert cli("add", log_dir, "--measurement", "0x" + measurement, "--platform",
                   "sev-snp", "--version", version, "--source", "git+https://x@abc") == 0
    assert capsys.readouterr().out == "0\n1\n"
    assert cli("checkpoint", log_dir) == 0
    cp = open_checkpoint(capsys.readouterr().out, verifier, origin=ORIGIN)
    assert cp.size == 2
    assert cli("prove", log_dir, "--measurement", measurement, "--platform", "sev-snp") == 0
    proof = TransparencyProof.from_json(json.loads(capsys.readouterr().out))
    assert (proof.index, proof.record.version, proof.record.measurement) == (
        1, "1.1", measurement.lower())
    verify_transparency_proof(proof, verifier, origin=ORIGIN)
    assert cli("prove", log_dir, "--measurement", measurement, "--platform", "sev-snp",
               "--size", "1") == 0
    assert json.loads(capsys.readouterr().out)["index"] == 0
    assert cli("consistency", log_dir, "--old", "1") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["old"], doc["new"]) == (1, 2)
    old = open_checkpoint(open_log(log_dir).checkpoint(1), verifier, origin=ORIGIN)
    verify_extension(old, cp, [b64(h) for h in doc["proof"]])


def test_cli_errors(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("checkpoint", log_dir) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert cli("init", log_dir, "--origin", ORIGIN) == 0
    capsys.readouterr()
    assert cli("init", log_dir, "--origin", ORIGIN) == 1
    assert "not empty" in capsys.readouterr().err
    assert cli("prove", log_dir, "--measurement", "ab", "--platform", "dev") == 1
    assert capsys.readouterr().err.startswith("hushbrief log: The log holds no records")
    args = ("add", log_dir, "--measurement", "ab", "--platform", "dev", "--version", "1",
            "--source", "s")
    assert cli(*args) == 0
    assert cli(*args) == 1
    assert "already in" in capsys.readouterr().err
    for bad in (["add", log_dir, "--measurement", "xyz", "--platform", "dev", "--version",
                 "1", "--source", "s"],
                ["consistency", log_dir, "--old", "-1"],
                ["serve", log_dir, "--listen", "localhost"],
                ["prove", log_dir, "--measurement", "ab", "--platform", "sgx"]):
        with pytest.raises(SystemExit) as exit_:
            cli(*bad)
        assert exit_.value.code == 2
    capsys.readouterr()


def test_cli_help_mentions_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("--help")
    out = capsys.readouterr().out
    for name in ("init", "add", "checkpoint", "prove", "consistency", "serve"):
        assert name in out


# -- HTTP server ---------------------------------------------------------------------------------

def test_server_endpoints(tlog: TransparencyLog, log_dir: Path) -> None:
    for n in range(3):
        tlog.add(record(n))
    verifier = tlog.verifier
    # The production server configuration (serve_server binds its own loopback port).
    server = build_server(log_dir, "127.0.0.1", 0)
    with serve_server(server) as base, httpx.Client(base_url=base) as client:
        resp = client.get("/checkpoint")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        assert "server" not in resp.headers
        assert open_checkpoint(resp.text, verifier, origin=ORIGIN).size == 3

        resp = client.get("/proof", params={"measurement": record(1).measurement,
                                            "platform": "sev-snp"})
        assert resp.status_code == 200
        proof = TransparencyProof.from_json(resp.json())
        assert verify_transparency_proof(proof, verifier, origin=ORIGIN).size == 3
        assert proof.index == 1

        resp = client.get("/proof", params={"measurement": "ff", "platform": "dev"})
        assert resp.status_code == 404
        assert str(log_dir) not in resp.text
        assert client.get("/proof", params={"platform": "dev"}).status_code == 400

        # A record added by another process is served without a restart.
        open_log(log_dir).add(record(7))
        assert client.get("/healthz").json() == {"status": "ok", "size": 4}
        resp = client.get("/consistency", params={"old": 3, "new": 4})
        assert resp.status_code == 200
        old = open_checkpoint(tlog.checkpoint(3), verifier, origin=ORIGIN)
        new = open_checkpoint(client.get("/checkpoint").text, verifier, origin=ORIGIN)
        verify_extension(old, new, [b64(h) for h in resp.json()["proof"]])
        assert client.get("/consistency", params={"old": 3}).status_code == 400
        assert client.get("/consistency", params={"old": "x", "new": 4}).status_code == 400
        assert client.get("/consistency", params={"old": 3, "new": 9}).status_code == 404

        assert client.get("/records").json() == [record(n).to_json()
                                                  for n in (0, 1, 2, 7)]
        assert client.get("/records", params={"start": 1, "end": 3}).json() == [
            record(1).to_json(), record(2).to_json()]
        assert client.get("/records", params={"start": 2, "end": 99}).json() == [
            record(2).to_json(), record(7).to_json()]
        assert client.get("/records", params={"start": 9}).status_code == 400
        assert client.post("/checkpoint").status_code == 405

        # A records file that shrank is a rewritten history: serve nothing from then on.
        path = log_dir / "records.jsonl"
        path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n")
        assert client.get("/checkpoint").status_code == 503
        assert client.get("/healthz").status_code == 503


def test_server_pages_records(tlog: TransparencyLog) -> None:
    for n in range(1005):
        tlog.add(ReleaseRecord(f"{n:04x}", "dev", "1", "s"))
    with serve(create_app(tlog)) as base:
        page = httpx.get(base + "/records").json()
        assert len(page) == 1000
        assert len(httpx.get(base + "/records", params={"start": 1000}).json()) == 5


def test_merkle_module_is_sans_io() -> None:
    source = Path(merkle.__file__).read_text()
    for name in ("import os", "import socket", "open(", "asyncio"):
        assert name not in source
