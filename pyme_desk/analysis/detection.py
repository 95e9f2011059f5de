"""Spot detection: band-pass filter, noise-scaled threshold, local maxima, ROI extraction.

1. The background-subtracted frame (photo-electrons) is band-passed with a difference of
   Gaussians: blur by ``Analysis.DetectionRadiusLowpass`` minus blur by
   ``Analysis.DetectionRadiusHighpass`` (both sigmas in pixels).
2. With ``Analysis.SNRThreshold`` (default) a pixel is a candidate where the band-passed value
   exceeds ``Analysis.DetectionThreshold`` times the local noise of the band-passed image:
   ``sqrt(background + read-noise variance) · ‖DoG kernel‖₂``, so the threshold reads as a
   signal-to-noise ratio (false detections on pure noise are rare above about 4).  The
   low-pass part alone must pass the same test against its own noise, which rejects the
   positive ring the high-pass leaves around a dark dip (an emitter that was on in the
   background frames but is off now).  Without SNR mode the threshold is an absolute level
   in photo-electrons for both.  (PYME's threshold is scaled differently; values written for
   PYME need adjusting.)
3. A candidate is kept when it is the largest value in the square of half-width
   ``Analysis.DebounceRadius`` around it (ties go to the first pixel in memory order).
4. Each kept spot gets a square ROI of ``2 · Analysis.ROISize + 1`` pixels, centred on it and
   shifted as needed to lie inside the frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class DetectionSettings:
    """Detection parameters (pixels, see the module docstring)."""

    threshold: float
    snr_threshold: bool = True
    lowpass: float = 1.0
    highpass: float = 3.0
    debounce_radius: int = 5
    roi_half_size: int = 3

    @property
    def roi_size(self) -> int:
        return 2 * self.roi_half_size + 1


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian kernel reaching 3 sigma (a delta for sigma <= 0)."""
    if sigma <= 0:
        return np.ones(1)
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return k / k.sum()


@numba.njit(cache=True, inline="always")
def _mirror(k, n):
    """Index ``k`` reflected into ``[0, n)`` (edge pixels repeated: ``-1 -> 0``, ``n -> n - 1``)."""
    if k < 0:
        k = -k - 1
    elif k >= n:
        k = 2 * n - k - 1
    return min(max(k, 0), n - 1)


@numba.njit(cache=True, parallel=True)
def _separable_blur(image, kernel, tmp, out):
    """Convolve with ``kernel`` along both axes (mirrored edges), without transposing."""
    nx, ny = image.shape
    r = kernel.size // 2
    for i in numba.prange(nx):  # along y (contiguous); interior without edge tests
        row = image[i]
        for j in range(ny):
            acc = 0.0
            if r <= j < ny - r:
                for k in range(kernel.size):
                    acc += kernel[k] * row[j + k - r]
            else:
                for k in range(kernel.size):
                    acc += kernel[k] * row[_mirror(j + k - r, ny)]
            tmp[i, j] = acc
    for i in numba.prange(nx):  # along x: whole rows at a time, vectorised over y
        dst = out[i]
        dst[:] = 0.0
        for k in range(kernel.size):
            src = tmp[_mirror(i + k - r, nx)]
            w = kernel[k]
            for j in range(ny):
                dst[j] += w * src[j]


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (float32) with mirrored edges."""
    kernel = gaussian_kernel(sigma).astype(np.float32)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if kernel.size == 1:
        return image.copy()
    tmp = np.empty_like(image)
    out = np.empty_like(image)
    _separable_blur(image, kernel, tmp, out)
    return out


def dog_noise_gain(lowpass: float, highpass: float) -> float:
    """‖G_low − G_high‖₂ of the 2-D difference-of-Gaussians kernel (‖G_low‖₂ when ``highpass``
    <= 0): the standard deviation it gives unit white noise."""
    g1 = gaussian_kernel(lowpass)
    if highpass <= 0:
        return float(g1 @ g1)
    g2 = gaussian_kernel(highpass)
    size = max(g1.size, g2.size)
    a, b = np.zeros(size), np.zeros(size)
    a[(size - g1.size) // 2:][:g1.size] = g1
    b[(size - g2.size) // 2:][:g2.size] = g2
    return float(math.sqrt((a @ a) ** 2 + (b @ b) ** 2 - 2 * (a @ b) ** 2))


def band_pass(image: np.ndarray, lowpass: float, highpass: float) -> tuple[np.ndarray, np.ndarray]:
    """``(blur(lowpass) − blur(highpass), blur(lowpass))``: the difference of Gaussians and its
    low-pass part."""
    low = gaussian_filter(image, lowpass)
    band = low - gaussian_filter(image, highpass) if highpass > 0 else low
    return band, low


@numba.njit(cache=True)
def _local_maxima(filtered, threshold, low, low_threshold, radius):
    nx, ny = filtered.shape
    found = []
    for i in range(nx):
        for j in range(ny):
            v = filtered[i, j]
            if not (v > threshold[i, j] and low[i, j] > low_threshold[i, j]):
                continue
            best = True
            for a in range(max(i - radius, 0), min(i + radius + 1, nx)):
                for b in range(max(j - radius, 0), min(j + radius + 1, ny)):
                    w = filtered[a, b]
                    if w > v or (w == v and (a < i or (a == i and b < j))):
                        best = False
                        break
                if not best:
                    break
            if best:
                found.append((i, j))
    out = np.empty((len(found), 2), np.int64)
    for k in range(len(found)):
        out[k, 0] = found[k][0]
        out[k, 1] = found[k][1]
    return out


def detect(electrons: np.ndarray, background: np.ndarray | float, settings: DetectionSettings,
           read_variance: np.ndarray | float = 0.0) -> np.ndarray:
    """``[x, y]`` pixel positions (shape (n, 2)) of the spots found in a photo-electron frame."""
    signal = np.asarray(electrons, dtype=np.float32) - np.asarray(background, dtype=np.float32)
    filtered, low = band_pass(signal, settings.lowpass, settings.highpass)
    if settings.snr_threshold:
        noise_var = np.maximum(np.asarray(background, dtype=np.float32), 0) + np.asarray(read_variance,
                                                                                    dtype=np.float32)
        noise = np.sqrt(np.maximum(noise_var, 1e-6))
        threshold = noise * np.float32(settings.threshold * dog_noise_gain(settings.lowpass, settings.highpass))
        low_threshold = noise * np.float32(settings.threshold * dog_noise_gain(settings.lowpass, 0.0))
    else:
        threshold = low_threshold = np.float32(settings.threshold)

    def full(a):
        return np.ascontiguousarray(np.broadcast_to(a, filtered.shape), dtype=np.float32)

    return _local_maxima(filtered, full(threshold), low, full(low_threshold), int(settings.debounce_radius))


def roi_origins(positions: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """``[x, y]`` of each ROI's first pixel: centred on the spot, moved inside the frame."""
    if shape[0] < size or shape[1] < size:
        raise ValueError(f"frames of {shape[0]}×{shape[1]} pixels are smaller than the {size}×{size} ROI")
    half = size // 2
    origins = np.asarray(positions, dtype=np.int64).reshape(-1, 2) - half
    np.clip(origins[:, 0], 0, shape[0] - size, out=origins[:, 0])
    np.clip(origins[:, 1], 0, shape[1] - size, out=origins[:, 1])
    return origins


@numba.njit(cache=True)
def _cut(image, origins, size, out):
    for k in range(origins.shape[0]):
        x0, y0 = origins[k, 0], origins[k, 1]
        for i in range(size):
            for j in range(size):
                out[k, i, j] = image[x0 + i, y0 + j]


def extract_rois(image: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    """The ``(n, size, size)`` float64 stack of ROIs at ``origins`` of ``image``."""
    out = np.empty((len(origins), size, size), np.float64)
    _cut(np.ascontiguousarray(image), np.ascontiguousarray(origins, dtype=np.int64), size, out)
    return out
