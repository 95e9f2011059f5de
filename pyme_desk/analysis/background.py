"""Background estimation from neighbouring frames (``Analysis.BGRange``).

The background of frame ``i`` is a per-pixel median (or percentile) of frames
``i + lo .. i + hi - 1``.  To keep the cost down it is computed once per *chunk* of
consecutive frames: every frame in ``[k·chunk, (k+1)·chunk)`` shares the estimate of the chunk's
first frame, so with the default ``BGRange [-10, 0]`` only frames already recorded are used and
a task can run as soon as its own frame has been spooled.  Where the window holds no frame (at
the start of a series) there is no estimate and callers fall back to a flat one.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numba
import numpy as np

DEFAULT_BG_RANGE = (-10, 0)
DEFAULT_CHUNK = 10


@numba.njit(cache=True, parallel=True)
def _rank_stack(stack, fraction, out):
    """Per-pixel order statistic of ``stack`` (n, m): median when ``fraction`` < 0."""
    n, m = stack.shape
    for p in numba.prange(m):
        values = np.empty(n, np.float32)
        for i in range(n):
            v = stack[i, p]
            k = i
            while k > 0 and values[k - 1] > v:  # insertion sort: windows are short
                values[k] = values[k - 1]
                k -= 1
            values[k] = v
        if fraction < 0.0:
            if n % 2:
                out[p] = values[n // 2]
            else:
                out[p] = 0.5 * (values[n // 2 - 1] + values[n // 2])
        else:
            out[p] = values[int(round(fraction * (n - 1)))]


def window_statistic(frames: np.ndarray, percentile: float = 0.0) -> np.ndarray:
    """Per-pixel median (``percentile`` 0) or ``percentile`` (fraction 0..1) of ``(n, x, y)`` frames."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or len(frames) == 0:
        raise ValueError(f"need a non-empty (n, x, y) stack, not shape {frames.shape}")
    if not 0.0 <= percentile <= 1.0:
        raise ValueError(f"background percentile is a fraction in [0, 1], not {percentile}")
    n = len(frames)
    out = np.empty(frames[0].size, np.float32)
    _rank_stack(np.ascontiguousarray(frames.reshape(n, -1)), percentile if percentile > 0 else -1.0, out)
    return out.reshape(frames.shape[1:])


class BackgroundEstimator:
    """Sliding-window background of a series, computed once per chunk and remembered.

    ``get_frame(i)`` returns frame ``i`` in photo-electrons (the caller caches frames);
    ``bg_range`` is ``(lo, hi)`` relative to the chunk's first frame; ``percentile`` 0 means
    median.  Thread-safe.
    """

    def __init__(self, get_frame: Callable[[int], np.ndarray], bg_range: tuple[int, int] = DEFAULT_BG_RANGE,
                 percentile: float = 0.0, chunk: int = DEFAULT_CHUNK, keep: int = 4):
        lo, hi = int(bg_range[0]), int(bg_range[1])
        if hi <= lo:
            raise ValueError(f"Analysis.BGRange must be [lo, hi] with lo < hi, not {list(bg_range)}")
        if chunk < 1:
            raise ValueError("background chunk must be at least one frame")
        self.get_frame = get_frame
        self.bg_range = (lo, hi)
        self.percentile = float(percentile)
        self.chunk = int(chunk)
        self._keep = keep
        self._cache: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def window(self, index: int, n_frames: int) -> range:
        """Frames whose statistic is the background of frame ``index`` (``n_frames`` exist)."""
        start = (index // self.chunk) * self.chunk
        lo, hi = self.bg_range
        return range(max(start + lo, 0), min(start + hi, n_frames))

    def background(self, index: int, n_frames: int) -> np.ndarray | None:
        """The background of frame ``index`` (photo-electrons), None if its window is empty."""
        key = index // self.chunk
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        frames = self.window(index, n_frames)
        estimate = (window_statistic(np.stack([self.get_frame(i) for i in frames]), self.percentile)
                    if len(frames) else None)
        if frames.stop == key * self.chunk + self.bg_range[1]:  # not cut short by the series' end: final
            with self._lock:
                self._cache[key] = estimate
                while len(self._cache) > self._keep:
                    self._cache.popitem(last=False)
        return estimate
