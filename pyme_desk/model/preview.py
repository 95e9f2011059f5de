"""The live localization preview's state: localizations accumulated into a histogram image.

:class:`LocalizationPreview` takes batches of localizations (x, y in nm; photons; localization
precision in nm) as analysis results arrive and keeps what the preview draws: the rendered
image (counts per ``pixel_nm`` bin), the total, the recent rate, and photon and precision
histograms.  :meth:`~LocalizationPreview.snapshot` returns an immutable :class:`PreviewSnapshot`.

Snapshots are taken by a poller twice a second and travel to the GUI thread, so they stay
small whatever the field: a snapshot carries the *display* image (the fine bins summed in
blocks so that it is at most :data:`DISPLAY_PIXELS` across, kept up to date as localizations
are added), shares its arrays with the previous snapshot while nothing was added, and reads
the full-resolution image only when asked (:meth:`PreviewSnapshot.full_image`, for export).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

PHOTON_BINS = np.linspace(0, 10000, 51)
PRECISION_BINS = np.linspace(0, 50, 51)
#: Seconds over which localizations/s is measured.
RATE_WINDOW_S = 5.0
#: The display image is at most this many pixels across (its fine bins summed): scaled down by
#: the view instead, lone localizations would fade to nothing.
DISPLAY_PIXELS = 512


@dataclass(frozen=True)
class PreviewSnapshot:
    """The preview at one moment.  ``image`` is the display image (``[x, y]`` counts, fine bins
    summed ``display_factor`` x ``display_factor``); its arrays are read-only and shared."""

    image: np.ndarray = field(compare=False, repr=False)
    pixel_nm: float
    display_factor: int
    localizations: int
    per_second: float
    photon_counts: np.ndarray = field(compare=False, repr=False)
    precision_counts: np.ndarray = field(compare=False, repr=False)
    read_full_image: Callable[[], np.ndarray] = field(compare=False, repr=False)

    def full_image(self) -> np.ndarray:
        """A copy of the full-resolution image (``pixel_nm`` bins) as it is now."""
        return self.read_full_image()


class LocalizationPreview:
    """Accumulates localizations over a field of ``width_nm`` x ``height_nm``; thread-safe."""

    def __init__(self, width_nm: float, height_nm: float, pixel_nm: float = 10.0,
                 clock=time.monotonic, display_pixels: int = DISPLAY_PIXELS) -> None:
        if width_nm <= 0 or height_nm <= 0 or pixel_nm <= 0:
            raise ValueError("the preview field and pixel size must be positive")
        self.pixel_nm = float(pixel_nm)
        self._shape = (max(1, int(np.ceil(width_nm / pixel_nm))), max(1, int(np.ceil(height_nm / pixel_nm))))
        self._factor = max(1, -(-max(self._shape) // display_pixels))
        self._image = np.zeros(self._shape, dtype=np.float32)
        self._display = np.zeros(tuple(-(-n // self._factor) for n in self._shape), dtype=np.float32)
        self._photons = np.zeros(len(PHOTON_BINS) - 1, dtype=np.int64)
        self._precision = np.zeros(len(PRECISION_BINS) - 1, dtype=np.int64)
        self._count = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._shared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # copies given out
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, x_nm, y_nm, photons=None, precision_nm=None) -> None:
        x = np.asarray(x_nm, dtype=float)
        y = np.asarray(y_nm, dtype=float)
        ix = np.floor(x / self.pixel_nm).astype(np.int64)
        iy = np.floor(y / self.pixel_nm).astype(np.int64)
        inside = (ix >= 0) & (iy >= 0) & (ix < self._shape[0]) & (iy < self._shape[1])
        ix, iy = ix[inside], iy[inside]
        with self._lock:
            np.add.at(self._image, (ix, iy), 1.0)
            np.add.at(self._display, (ix // self._factor, iy // self._factor), 1.0)
            if photons is not None:
                self._photons += np.histogram(np.asarray(photons, float), PHOTON_BINS)[0]
            if precision_nm is not None:
                self._precision += np.histogram(np.asarray(precision_nm, float), PRECISION_BINS)[0]
            self._count += int(x.size)
            self._recent.append((self._clock(), int(x.size)))
            self._shared = None

    def snapshot(self) -> PreviewSnapshot:
        with self._lock:
            now = self._clock()
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_S:
                self._recent.popleft()
            recent = sum(n for _, n in self._recent)
            span = max(now - self._recent[0][0], 1.0) if self._recent else RATE_WINDOW_S
            if self._shared is None:
                self._shared = tuple(_frozen_copy(a) for a in (self._display, self._photons, self._precision))
            display, photons, precision = self._shared
            return PreviewSnapshot(image=display, pixel_nm=self.pixel_nm, display_factor=self._factor,
                                   localizations=self._count, per_second=recent / span,
                                   photon_counts=photons, precision_counts=precision,
                                   read_full_image=self.full_image)

    def full_image(self) -> np.ndarray:
        """A copy of the full-resolution image (counts per ``pixel_nm`` bin)."""
        with self._lock:
            return self._image.copy()


def _frozen_copy(array: np.ndarray) -> np.ndarray:
    copy = array.copy()
    copy.flags.writeable = False
    return copy
