"""What a client of the log checks (DESIGN.md §5, step 3), composed in one place (sans-I/O).

* :func:`verify_transparency_proof`: the checkpoint in a bundle's ``transparency`` field is
  a C2SP checkpoint signed by the pinned log key for the pinned origin, and the record is
  in the tree that checkpoint commits to (RFC 9162 §2.1.3.2, against the *checkpoint's*
  size and root, never a size taken from elsewhere in the bundle).
* :func:`verify_extension`: a newer checkpoint extends the one the client remembered
  (RFC 9162 §2.1.4.2), so a log cannot show different histories to different clients
  without one of them noticing.
"""

from __future__ import annotations

from collections.abc import Sequence

from hushbrief.evidence.bundle import TransparencyProof
from hushbrief.tlog.merkle import (
    EMPTY_ROOT,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from hushbrief.tlog.note import Checkpoint, Verifier, open_checkpoint


def verify_transparency_proof(
    proof: TransparencyProof, verifier: Verifier, *, origin: str
) -> Checkpoint:
    """Check the signed checkpoint and the record's inclusion; return the checkpoint.

    Raises NoteError (checkpoint) or ProofError (inclusion). The caller still compares
    ``proof.record.measurement``/``platform`` with what the hardware evidence says.
    """
    checkpoint = open_checkpoint(proof.checkpoint, verifier, origin=origin)
    verify_inclusion(leaf_hash(proof.record.leaf()), proof.index, checkpoint.size,
                     proof.proof, checkpoint.root_hash)
    return checkpoint


def verify_extension(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new`` extends ``old`` (both already signature-checked); ProofError if not."""
    if old.origin != new.origin:
        raise ProofError(f"the checkpoints are of different logs ({old.origin!r}, "
                         f"{new.origin!r})")
    if old.size == 0:
        # Every tree extends the empty one; there is no proof to check, only that the
        # remembered checkpoint really was of the empty tree.
        if old.root_hash != EMPTY_ROOT or proof:
            raise ProofError("the remembered empty checkpoint has a non-empty root hash "
                             "or the proof is not empty")
        return
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
