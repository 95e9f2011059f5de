"""The live localization preview's state: localizations accumulated into a histogram image.

:class:`LocalizationPreview` takes batches of localizations (x, y in nm; photons; localization
precision in nm) as analysis results arrive and keeps what the preview draws: the rendered
image (counts per ``pixel_nm`` bin), the total, the recent rate, and photon and precision
histograms.  :meth:`snapshot` returns an immutable :class:`PreviewSnapshot`.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

PHOTON_BINS = np.linspace(0, 10000, 51)
PRECISION_BINS = np.linspace(0, 50, 51)
#: Seconds over which localizations/s is measured.
RATE_WINDOW_S = 5.0


@dataclass(frozen=True)
class PreviewSnapshot:
    image: np.ndarray = field(compare=False, repr=False)  # [x, y] counts
    pixel_nm: float
    localizations: int
    per_second: float
    photon_counts: np.ndarray = field(compare=False, repr=False)
    precision_counts: np.ndarray = field(compare=False, repr=False)


class LocalizationPreview:
    """Accumulates localizations over a field of ``width_nm`` x ``height_nm``; thread-safe."""

    def __init__(self, width_nm: float, height_nm: float, pixel_nm: float = 10.0,
                 clock=time.monotonic) -> None:
        if width_nm <= 0 or height_nm <= 0 or pixel_nm <= 0:
            raise ValueError("the preview field and pixel size must be positive")
        self.pixel_nm = float(pixel_nm)
        self._shape = (max(1, int(np.ceil(width_nm / pixel_nm))), max(1, int(np.ceil(height_nm / pixel_nm))))
        self._image = np.zeros(self._shape, dtype=np.float32)
        self._photons = np.zeros(len(PHOTON_BINS) - 1, dtype=np.int64)
        self._precision = np.zeros(len(PRECISION_BINS) - 1, dtype=np.int64)
        self._count = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, x_nm, y_nm, photons=None, precision_nm=None) -> None:
        x = np.asarray(x_nm, dtype=float)
        y = np.asarray(y_nm, dtype=float)
        ix = np.floor(x / self.pixel_nm).astype(np.int64)
        iy = np.floor(y / self.pixel_nm).astype(np.int64)
        inside = (ix >= 0) & (iy >= 0) & (ix < self._shape[0]) & (iy < self._shape[1])
        with self._lock:
            np.add.at(self._image, (ix[inside], iy[inside]), 1.0)
            if photons is not None:
                self._photons += np.histogram(np.asarray(photons, float), PHOTON_BINS)[0]
            if precision_nm is not None:
                self._precision += np.histogram(np.asarray(precision_nm, float), PRECISION_BINS)[0]
            self._count += int(x.size)
            self._recent.append((self._clock(), int(x.size)))

    def snapshot(self) -> PreviewSnapshot:
        with self._lock:
            now = self._clock()
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
                self._recent.popleft()
            recent = sum(n for _, n in self._recent)
            span = max(now - self._recent[0][0], 1.0) if self._recent else RATE_WINDOW_S
            return PreviewSnapshot(image=self._image.copy(), pixel_nm=self.pixel_nm,
                                   localizations=self._count, per_second=recent / span,
                                   photon_counts=self._photons.copy(),
                                   precision_counts=self._precision.copy())
