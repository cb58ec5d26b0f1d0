"""The transparency log of backend releases (DESIGN.md §5).

* ``merkle`` — RFC 6962 hashing, RFC 9162 inclusion/consistency proofs and verifiers (sans-I/O)
* ``note`` — C2SP signed notes (Ed25519) and tlog-checkpoints (sans-I/O)
* ``verify`` — what a client checks: a bundle's proof against the pinned key, newer checkpoints
* ``store`` — the log directory; ``server`` — its read-only HTTP view; ``cli`` — ``hushbrief log``
"""
