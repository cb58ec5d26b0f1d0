"""Matrix, through matrix-nio with end-to-end encryption: see ``adapter`` for what it decides."""

from hushbrief.adapters.matrix.adapter import MatrixAdapter
from hushbrief.adapters.matrix.errors import MatrixStartError
from hushbrief.adapters.matrix.history import FetchStats, MatrixHistory

__all__ = ["FetchStats", "MatrixAdapter", "MatrixHistory", "MatrixStartError"]
