""".npy bytes to an array, safely (no pickles) and from any thread.

numpy reads a .npy header with ``ast.literal_eval``.  CPython 3.11's AST builder keeps its
recursion counter per interpreter, not per thread, so two threads parsing at once can fail with
``SystemError: AST constructor recursion depth mismatch`` (python/cpython gh-106905 and kin):
seen here as one results upload in 45,000 refused by a data server filing results from several
workers at once.  Every .npy read in pyme_desk goes through :func:`load_npy`, one at a time.
"""
from __future__ import annotations

import io
import threading

import numpy as np

_LOCK = threading.Lock()


def load_npy(data: bytes) -> np.ndarray:
    """The array in ``data`` (.npy format); numpy's errors (ValueError, ...) for bad bytes."""
    with _LOCK:
        return np.load(io.BytesIO(data), allow_pickle=False)
