"""Super-resolution images from localizations, built up incrementally (the live preview's engine).

A :class:`Renderer` owns one float image covering a fixed field of view (nm) at a chosen pixel
size.  :meth:`Renderer.add` draws new localizations into it without touching what is already
there, so a preview that receives results batch by batch costs only the new batch:

* ``"histogram"``: each localization adds 1 to the pixel it falls in;
* ``"gaussian"``: each adds a unit-mass Gaussian blob whose sigma is its localization precision
  (``fitError.x0``/``y0`` averaged; at least ``min_sigma_nm``), truncated at 4 sigma.

Filters drop localizations before drawing: ``min_photons``, ``max_precision_nm`` and, by
default, anything whose fit did not converge (``resultCode`` != 0).  The image is indexed
``[x, y]`` like frames; pixel ``i`` covers ``[x_min + i·p, x_min + (i+1)·p)``.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numba
import numpy as np

MODES = ("histogram", "gaussian")


@dataclass(frozen=True)
class RenderFilter:
    """Which localizations are drawn."""

    min_photons: float = 0.0
    max_precision_nm: float = math.inf
    converged_only: bool = True

    def keep(self, rows: np.ndarray) -> np.ndarray:
        fr, fe = rows["fitResults"], rows["fitError"]
        precision = 0.5 * (fe["x0"] + fe["y0"])
        keep = (fr["photons"] >= self.min_photons) & (precision <= self.max_precision_nm)
        keep &= np.isfinite(fr["x0"]) & np.isfinite(fr["y0"])
        if self.converged_only:
            keep &= rows["resultCode"] == 0
        return keep


@numba.njit(cache=True)
def _histogram(image, px, py):
    nx, ny = image.shape
    for k in range(px.size):
        i, j = px[k], py[k]
        if 0 <= i < nx and 0 <= j < ny:
            image[i, j] += 1.0


@numba.njit(cache=True)
def _gaussians(image, x, y, s):
    """Add unit-mass pixel-integrated Gaussians at (x, y) of width s (all in image pixels)."""
    nx, ny = image.shape
    for k in range(x.size):
        sig = s[k]
        reach = int(math.ceil(4.0 * sig))
        ci, cj = int(math.floor(x[k])), int(math.floor(y[k]))
        i0, i1 = max(ci - reach, 0), min(ci + reach + 1, nx)
        j0, j1 = max(cj - reach, 0), min(cj + reach + 1, ny)
        if i0 >= i1 or j0 >= j1:
            continue
        scale = 1.0 / (math.sqrt(2.0) * sig)
        wx = np.empty(i1 - i0)
        wy = np.empty(j1 - j0)
        for i in range(i0, i1):
            wx[i - i0] = 0.5 * (math.erf((i + 1 - x[k]) * scale) - math.erf((i - x[k]) * scale))
        for j in range(j0, j1):
            wy[j - j0] = 0.5 * (math.erf((j + 1 - y[k]) * scale) - math.erf((j - y[k]) * scale))
        for i in range(i0, i1):
            for j in range(j0, j1):
                image[i, j] += wx[i - i0] * wy[j - j0]


class Renderer:
    """An incrementally built super-resolution image; see the module docstring.

    ``extent_nm``: ``(x_min, x_max, y_min, y_max)`` of the field; ``pixel_size_nm``: output
    pixel size; ``mode``: ``"histogram"`` or ``"gaussian"``.  Thread-safe.
    """

    def __init__(self, extent_nm: tuple[float, float, float, float], pixel_size_nm: float = 10.0,
                 mode: str = "histogram", filter: RenderFilter | None = None, min_sigma_nm: float | None = None):
        if mode not in MODES:
            raise ValueError(f"render mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not pixel_size_nm > 0:
            raise ValueError("pixel size must be positive")
        x_min, x_max, y_min, y_max = (float(v) for v in extent_nm)
        if not (x_max > x_min and y_max > y_min):
            raise ValueError(f"empty extent {extent_nm}")
        self.origin = (x_min, y_min)
        self.pixel_size_nm = float(pixel_size_nm)
        self.mode = mode
        self.filter = filter or RenderFilter()
        self.min_sigma_nm = self.pixel_size_nm / 2 if min_sigma_nm is None else float(min_sigma_nm)
        shape = (max(1, math.ceil((x_max - x_min) / pixel_size_nm)),
                 max(1, math.ceil((y_max - y_min) / pixel_size_nm)))
        self._image = np.zeros(shape, np.float64)
        self.count = 0
        self._lock = threading.Lock()

    @property
    def shape(self) -> tuple[int, int]:
        return self._image.shape

    def image(self) -> np.ndarray:
        """A float32 copy of the image so far."""
        with self._lock:
            return self._image.astype(np.float32)

    def add(self, rows: np.ndarray) -> int:
        """Draw FitResults rows (:data:`~pyme_desk.analysis.results.FIT_RESULTS_DTYPE` or any
        array with the same ``fitResults``/``fitError``/``resultCode`` fields); returns how many
        passed the filter."""
        if len(rows) == 0:
            return 0
        rows = rows[self.filter.keep(rows)]
        x = (rows["fitResults"]["x0"].astype(np.float64) - self.origin[0]) / self.pixel_size_nm
        y = (rows["fitResults"]["y0"].astype(np.float64) - self.origin[1]) / self.pixel_size_nm
        with self._lock:
            if self.mode == "histogram":
                _histogram(self._image, np.floor(x).astype(np.int64), np.floor(y).astype(np.int64))
            else:
                precision = 0.5 * (rows["fitError"]["x0"] + rows["fitError"]["y0"]).astype(np.float64)
                sigma = np.maximum(precision, self.min_sigma_nm) / self.pixel_size_nm
                _gaussians(self._image, x, y, sigma)
            self.count += len(rows)
        return len(rows)

    def clear(self) -> None:
        with self._lock:
            self._image[:] = 0
            self.count = 0
