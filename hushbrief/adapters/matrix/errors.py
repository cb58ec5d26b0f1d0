"""The Matrix adapter's small exception tree.

nio reports expected failures as values (``RoomSendError``, ``JoinError``, …) and
network failures as aiohttp or asyncio exceptions; ``transport`` translates both,
once, into these. Every message is a reason code (an ``errcode`` such as
``M_FORBIDDEN``, or a word such as ``network``), never the homeserver's ``error``
text: that text is free-form and can quote what it rejected.
"""

from __future__ import annotations


class MatrixError(Exception):
    """A Matrix call did not succeed. ``str(exc)`` is a reason code, never content."""


class ApiError(MatrixError):
    """The homeserver answered with an error: ``errcode`` (``M_FORBIDDEN``, …) and HTTP status."""

    def __init__(self, errcode: str, status: int | None = None) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.status = status


class GaveUp(MatrixError):
    """Rate limiting or network failures outlasted the retry budget."""


class MatrixStartError(Exception):
    """The adapter could not start; the message is one line for the operator."""
