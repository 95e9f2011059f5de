"""A synthetic SMLM camera: blinking fluorophores on a structure, seen through a noisy sCMOS.

:class:`SMLMSimulator` places fluorophores on a structure (smooth random filaments, rings of
100–200 nm radius, or both), runs their photophysics as a per-frame Markov chain (off ⇄ on,
on → bleached), renders every emitter that is on with a pixel-integrated Gaussian PSF and
exposes the result on a camera model (Poisson shot noise, Gaussian read noise, gain, offset,
optional per-pixel maps) to give ``uint16`` ADU frames.  The same seed gives the same frames.

Conventions
-----------
* Frames are indexed ``[x, y]`` as in PYME and :mod:`pyme_desk.formats.pzf`: a frame has
  shape ``(width, height)``; ``frame[x, y]`` is the pixel at column ``x``, row ``y``.
* Pixel ``i`` is centred at ``i * pixel_size_nm`` and covers ``[(i - ½)p, (i + ½)p)``, so a
  ground-truth ``x_nm`` of ``10 * p`` lies in the middle of pixel 10.
* ``photons`` are detected photons (photo-electrons): quantum efficiency is taken as folded in.
  The camera turns ``e`` electrons into ``round(e / electrons_per_count + ad_offset)`` ADU,
  clipped to 0..65535.
* The PSF is a 2-D Gaussian of standard deviation ``psf_sigma_nm`` integrated over each pixel
  (differences of erf), cut off at least 4 sigma from the emitter (losing at most ~1e-4 of its
  photons).
* Photophysics starts in the steady state (each fluorophore on with probability
  ``on_rate / (on_rate + off_rate)``) and steps once per frame; an emitter is either on for the
  whole frame or off.  Rates are per-frame probabilities.

Speed
-----
Pixels that no emitter reaches all follow one discrete distribution (background photons plus
read noise, rounded to ADU), drawn from an alias table with one 64-bit random number per pixel.
Under an emitter's PSF, when the camera gives a whole number of ADU per electron (the default
0.5 e⁻/count gives 2), Poisson(signal) electrons are simply added to that draw (Poisson counts
add, and whole ADU steps commute with rounding); otherwise, and everywhere when per-pixel maps
are given, pixels are drawn from scratch (Poisson, Gaussian, round).  The loops are numba
kernels that release the GIL; random numbers are counter-based (a hash of frame key, pixel and
draw), so large frames are split between threads and still come out the same.
"""
from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Literal

import numba
import numpy as np

__all__ = ["CameraModel", "SMLMSimulator", "GROUND_TRUTH_DTYPE", "STRUCTURES"]

STRUCTURES = ("filaments", "rings", "mixed")
Structure = Literal["filaments", "rings", "mixed"]

#: One row per emitter that was on in a frame.
GROUND_TRUTH_DTYPE = np.dtype([("frame", "<i4"), ("x_nm", "<f4"), ("y_nm", "<f4"),
                               ("photons", "<f4"), ("fluorophore", "<i4")])

_OFF, _ON, _BLEACHED = 0, 1, 2
#: Below this many pixels a frame's work stays on the calling thread.
_PARALLEL_MIN_PIXELS = 1 << 18
_MAX_ADU = 65535
#: The PSF window reaches this many sigma beyond the emitter's own pixel.
_PSF_REACH_SIGMA = 4.0


@dataclass(frozen=True, eq=False)
class CameraModel:
    """An sCMOS-like camera: offset (ADU), gain (electrons per ADU count), read noise (e⁻ rms).

    Optional per-pixel maps of frame shape ``(width, height)`` replace the scalars pixel by
    pixel: ``offset_map`` in ADU, ``variance_map`` the read-noise variance in e⁻², and
    ``gain_map`` in electrons per count.  The scalars still go into the metadata.
    """

    ad_offset: float = 100.0
    electrons_per_count: float = 0.5
    read_noise_e: float = 1.5
    offset_map: np.ndarray | None = None
    variance_map: np.ndarray | None = None
    gain_map: np.ndarray | None = None

    @property
    def has_maps(self) -> bool:
        return any(m is not None for m in (self.offset_map, self.variance_map, self.gain_map))


# ------------------------------------------------------------------------------------------
# Compiled kernels
# ------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _add_signal(signal, touched, x_px, y_px, photons, sigma_px, radius):
    """Add each emitter's pixel-integrated Gaussian (expected photons) into ``signal`` [x, y].

    Flat indices of pixels that were zero before are appended to ``touched``; returns how many.
    """
    width, height = signal.shape
    size = 2 * radius + 1
    scale = 1.0 / (math.sqrt(2.0) * sigma_px)
    edge_x = np.empty(size + 1)
    edge_y = np.empty(size + 1)
    n_touched = 0
    for e in range(x_px.size):
        if photons[e] <= 0.0:
            continue
        cx = int(math.floor(x_px[e] + 0.5))
        cy = int(math.floor(y_px[e] + 0.5))
        for d in range(size + 1):
            edge_x[d] = math.erf((cx - radius - 0.5 + d - x_px[e]) * scale)
            edge_y[d] = math.erf((cy - radius - 0.5 + d - y_px[e]) * scale)
        half = 0.25 * photons[e]  # 0.5 * 0.5 from the two erf differences
        for i in range(size):
            xi = cx - radius + i
            if xi < 0 or xi >= width:
                continue
            fx = half * (edge_x[i + 1] - edge_x[i])
            for j in range(size):
                yi = cy - radius + j
                if yi < 0 or yi >= height:
                    continue
                v = fx * (edge_y[j + 1] - edge_y[j])
                if v <= 0.0:
                    continue
                if signal[xi, yi] == 0.0:
                    touched[n_touched] = xi * height + yi
                    n_touched += 1
                signal[xi, yi] += v
    return n_touched


# Random numbers are counter-based (splitmix64): draw ``j`` of pixel ``i`` in a frame is a hash of
# (frame key, i, j), so a frame is the same however its pixels are split between threads.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def _pixel_key(key, i):
    return _mix(key + np.uint64(i) * _GOLDEN)


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform(pixel_key, j):
    """Draw ``j`` for a pixel: a double in [0, 1)."""
    return float(_mix(pixel_key + np.uint64(j + 1) * _GOLDEN) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True)
def _poisson(lam, pixel_key):
    """One Poisson draw: inversion for small means, Hörmann's PTRS rejection (1993) above.

    Uses draws 0, 1, 2, ... of ``pixel_key``; returns (count, draws used)."""
    if lam <= 0.0:
        return 0, 0
    if lam < 12.0:
        u = _uniform(pixel_key, 0)
        p = math.exp(-lam)
        cdf = p
        k = 0
        while u > cdf and p > 0.0:
            k += 1
            p *= lam / k
            cdf += p
        return k, 1
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    j = 0
    while True:
        u = _uniform(pixel_key, j) - 0.5
        v = _uniform(pixel_key, j + 1)
        j += 2
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= v_r:
            return int(k), j
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return int(k), j


@numba.njit(cache=True, nogil=True)
def _fill_from_alias(out, start, stop, key, shift, cut, value, alias):
    """Draw ``out[start:stop]`` from an alias table: a pixel's hash picks a bin with its top
    bits and the bin's value or alias with its low 32 bits."""
    sh = np.uint64(shift)
    for i in range(start, stop):
        z = _pixel_key(key, i)
        k = z >> sh
        out[i] = value[k] if (z & _LOW32) < cut[k] else alias[k]


@numba.njit(cache=True, nogil=True)
def _add_shot_signal(out, pixels, signal, counts_per_electron, key):
    """Add Poisson(signal) electrons, as ``counts_per_electron`` ADU each, to background pixels
    already drawn; exact because Poisson counts add and whole ADU steps commute with rounding.
    Clears ``signal`` at those pixels for the next frame."""
    for t in range(pixels.size):
        i = pixels[t]
        n, _ = _poisson(signal[i], _pixel_key(key, i))
        adu = out[i] + counts_per_electron * n
        signal[i] = 0.0
        out[i] = adu if adu < _MAX_ADU else _MAX_ADU


@numba.njit(cache=True, nogil=True)
def _expose_exact(out, pixels, signal, background, offset, gain, read_sd, key):
    """Draw the listed pixels exactly: Poisson(background + signal) e⁻, Gaussian read noise
    (Box–Muller), then ADU.  ``offset``/``gain``/``read_sd`` hold one value or one per pixel.
    Clears ``signal`` at those pixels for the next frame."""
    per_pixel_offset = offset.size > 1
    per_pixel_gain = gain.size > 1
    per_pixel_sd = read_sd.size > 1
    for t in range(pixels.size):
        i = pixels[t]
        pk = _pixel_key(key, i)
        n, used = _poisson(background + signal[i], pk)
        signal[i] = 0.0
        electrons = float(n)
        sd = read_sd[i] if per_pixel_sd else read_sd[0]
        if sd > 0.0:
            u1 = 1.0 - _uniform(pk, used)
            u2 = _uniform(pk, used + 1)
            electrons += sd * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        g = gain[i] if per_pixel_gain else gain[0]
        o = offset[i] if per_pixel_offset else offset[0]
        adu = math.floor(electrons / g + o + 0.5)
        out[i] = 0 if adu < 0.0 else (_MAX_ADU if adu > _MAX_ADU else int(adu))


@numba.njit(cache=True, nogil=True)
def _erf(x):
    out = np.empty_like(x)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = math.erf(flat_in[i])
    return out


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads every simulator shares for its large frames, started on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="smlm-sim")
        return _POOL


# ------------------------------------------------------------------------------------------
# Background distribution
# ------------------------------------------------------------------------------------------

def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.ascontiguousarray(z / math.sqrt(2.0))))


def background_pmf(background: float, camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """ADU values and their probabilities for a pixel that sees only background photons.

    The pixel holds Poisson(``background``) electrons plus Gaussian read noise, converted to
    ADU with rounding and clipping as the camera does.  Probabilities below 1e-15 are dropped.
    """
    g, off, sd = camera.electrons_per_count, camera.ad_offset, camera.read_noise_e
    spread = 12.0 * math.sqrt(background) + 12.0
    n = np.arange(max(0, int(background - spread)), int(background + spread) + 1)
    log_p = n * math.log(background) - background - np.array([math.lgamma(k + 1) for k in n]) \
        if background > 0 else np.where(n == 0, 0.0, -np.inf)
    p_n = np.exp(log_p)
    p_n /= p_n.sum()
    lo = math.floor((n[0] - 10 * sd) / g + off) - 1
    hi = math.ceil((n[-1] + 10 * sd) / g + off) + 1
    adu = np.arange(lo, hi + 1)
    if sd > 0:
        upper = _normal_cdf((g * (adu[:, None] + 0.5 - off) - n[None, :]) / sd)
        lower = _normal_cdf((g * (adu[:, None] - 0.5 - off) - n[None, :]) / sd)
        p = (upper - lower) @ p_n
    else:
        exact = np.floor(n / g + off + 0.5).astype(np.int64)
        p = np.bincount(exact - lo, weights=p_n, minlength=adu.size)[:adu.size]
    clipped = np.clip(adu, 0, _MAX_ADU)
    values, where = np.unique(clipped, return_inverse=True)
    probs = np.bincount(where, weights=p)
    keep = probs > 1e-15
    return values[keep], probs[keep] / probs[keep].sum()


class _AliasTable:
    """Walker's alias method over a power-of-two number of bins, driven by 64-bit draws.

    The top bits of a draw pick a bin and its low 32 bits decide between the bin's own value
    and its alias, so each outcome's probability is exact to about 2⁻³².
    """

    def __init__(self, values: np.ndarray, probs: np.ndarray):
        bits = max(1, math.ceil(math.log2(len(values))))
        k = 1 << bits
        p = np.zeros(k)
        p[:len(probs)] = probs * k
        vals = np.zeros(k, dtype=np.uint16)
        vals[:len(values)] = values
        alias = vals.copy()
        small = [i for i in range(k) if p[i] < 1.0]
        large = [i for i in range(k) if p[i] >= 1.0]
        while small and large:
            s, big = small.pop(), large.pop()
            alias[s] = vals[big]
            p[big] -= 1.0 - p[s]
            (small if p[big] < 1.0 else large).append(big)
        for i in small + large:  # leftovers are 1 up to rounding
            p[i] = 1.0
        self.shift = 64 - bits
        self.cut = np.minimum(np.round(p * 2.0**32), 2.0**32).astype(np.uint64)
        self.value = vals
        self.alias = alias

    def fill(self, out: np.ndarray, start: int, stop: int, key: int) -> None:
        """Draw ``out[start:stop]`` (flat) for the frame whose random key is ``key``."""
        _fill_from_alias(out, start, stop, np.uint64(key), self.shift, self.cut, self.value, self.alias)


# ------------------------------------------------------------------------------------------
# Structures
# ------------------------------------------------------------------------------------------

def _reflect(v: np.ndarray, upper: float) -> np.ndarray:
    """Fold coordinates into [0, upper] by mirroring at both ends."""
    if upper <= 0:
        return np.zeros_like(v)
    v = np.mod(v, 2.0 * upper)
    return np.where(v > upper, 2.0 * upper - v, v)


def _filaments(rng: np.random.Generator, n: int, extent: tuple[float, float]) -> np.ndarray:
    """``n`` points along smooth random curves (worm-like chains 10 µm long, persistence 3 µm)."""
    if n == 0:
        return np.empty((0, 2))
    step, persistence, length = 20.0, 3000.0, 10000.0
    n_curves = max(1, round(extent[0] * extent[1] / 40e6))  # about one per 40 µm²
    steps = int(length / step)
    start = rng.uniform(0, 1, (n_curves, 2)) * extent
    heading = rng.uniform(0, 2 * np.pi, (n_curves, 1)) + np.cumsum(
        rng.normal(0, math.sqrt(step / persistence), (n_curves, steps)), axis=1)
    path = start[:, None, :] + np.cumsum(
        step * np.stack([np.cos(heading), np.sin(heading)], axis=-1), axis=1)
    curve = rng.integers(0, n_curves, n)
    along = rng.uniform(0, steps - 1, n)
    k = along.astype(int)
    frac = (along - k)[:, None]
    points = path[curve, k] * (1 - frac) + path[curve, k + 1] * frac
    return points + rng.normal(0, 8.0, (n, 2))  # label linker scatter


def _rings(rng: np.random.Generator, n: int, extent: tuple[float, float]) -> np.ndarray:
    """``n`` points on rings of 100–200 nm radius, about 24 labels per ring."""
    if n == 0:
        return np.empty((0, 2))
    n_rings = max(1, round(n / 24))
    centres = rng.uniform(0, 1, (n_rings, 2)) * extent
    radii = rng.uniform(100.0, 200.0, n_rings)
    ring = rng.integers(0, n_rings, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    points = centres[ring] + radii[ring, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + rng.normal(0, 5.0, (n, 2))


def place_fluorophores(rng: np.random.Generator, structure: Structure, n: int,
                       extent_nm: tuple[float, float]) -> np.ndarray:
    """``n`` fluorophore positions (nm, shape (n, 2)) on ``structure`` within ``[0, extent]``."""
    if structure == "filaments":
        points = _filaments(rng, n, extent_nm)
    elif structure == "rings":
        points = _rings(rng, n, extent_nm)
    elif structure == "mixed":
        half = n // 2
        points = np.concatenate([_filaments(rng, half, extent_nm), _rings(rng, n - half, extent_nm)])
    else:
        raise ValueError(f"unknown structure {structure!r}; use one of {', '.join(STRUCTURES)}")
    return np.stack([_reflect(points[:, 0], extent_nm[0]), _reflect(points[:, 1], extent_nm[1])], axis=1)


# ------------------------------------------------------------------------------------------
# The simulator
# ------------------------------------------------------------------------------------------

class SMLMSimulator:
    """A simulated SMLM acquisition; see the module docstring for the model and conventions.

    ``density``: fluorophores per µm² of field, used when ``n_fluorophores`` is None.
    ``positions_nm``: explicit fluorophore positions, shape (n, 2), instead of a structure.
    ``photons``: mean detected photons per emitter per frame; each on-frame draws from a gamma
    distribution with coefficient of variation ``photon_cv`` (0 gives exactly ``photons``).
    ``background_photons_per_px``: background photons per pixel per frame.
    ``on_rate``, ``off_rate``, ``bleach_rate``: per-frame probabilities off→on, on→off, on→bleached.
    ``record_ground_truth``: keep per-frame ground truth (turn off for long benchmarks).
    ``cycle_time_s``: the camera cycle time written to the metadata.
    ``threads``: how many threads draw a large frame (default: one per CPU); frames do not
    depend on it.
    """

    def __init__(self, width: int = 256, height: int = 256, *, seed: int = 0,
                 structure: Structure = "mixed", density: float = 15.0,
                 n_fluorophores: int | None = None, positions_nm: np.ndarray | None = None,
                 pixel_size_nm: float = 100.0, psf_sigma_nm: float = 130.0,
                 photons: float = 2000.0, photon_cv: float = 0.3,
                 background_photons_per_px: float = 20.0,
                 on_rate: float = 0.01, off_rate: float = 0.5, bleach_rate: float = 0.01,
                 camera: CameraModel | None = None, record_ground_truth: bool = True,
                 cycle_time_s: float = 0.01, threads: int | None = None):
        if width < 1 or height < 1:
            raise ValueError(f"frame size must be positive, not {width}×{height}")
        for name, rate in (("on_rate", on_rate), ("off_rate", off_rate), ("bleach_rate", bleach_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} is a per-frame probability in [0, 1], not {rate}")
        if off_rate + bleach_rate > 1.0:
            raise ValueError("off_rate + bleach_rate must not exceed 1")
        if pixel_size_nm <= 0 or psf_sigma_nm <= 0:
            raise ValueError("pixel_size_nm and psf_sigma_nm must be positive")
        if photons < 0 or background_photons_per_px < 0 or photon_cv < 0 or density < 0:
            raise ValueError("photons, photon_cv, background and density must not be negative")
        self.width, self.height = int(width), int(height)
        self.seed = int(seed)
        self.structure = structure
        self.density = float(density)
        self.pixel_size_nm = float(pixel_size_nm)
        self.psf_sigma_nm = float(psf_sigma_nm)
        self.photons = float(photons)
        self.photon_cv = float(photon_cv)
        self.background = float(background_photons_per_px)
        self.on_rate, self.off_rate, self.bleach_rate = float(on_rate), float(off_rate), float(bleach_rate)
        self.camera = camera or CameraModel()
        if self.camera.electrons_per_count <= 0 or self.camera.read_noise_e < 0:
            raise ValueError("camera gain must be positive and read noise not negative")
        self.record_ground_truth = record_ground_truth
        self.cycle_time_s = float(cycle_time_s)
        self._threads = max(1, threads or os.cpu_count() or 1)
        self.start_time = time.time()

        self._rng = np.random.default_rng(self.seed)
        extent = ((self.width - 1) * self.pixel_size_nm, (self.height - 1) * self.pixel_size_nm)
        if positions_nm is not None:
            self.structure = "custom"
            self.positions_nm = np.array(positions_nm, dtype=float).reshape(-1, 2)
        else:
            if n_fluorophores is None:
                area_um2 = self.width * self.height * (self.pixel_size_nm / 1000.0) ** 2
                n_fluorophores = round(self.density * area_um2)
            points = place_fluorophores(self._rng, structure, int(n_fluorophores), extent)
            # Numbered along x, so that the pixels of successive emitters lie close in memory.
            self.positions_nm = points[np.argsort(points[:, 0], kind="stable")]
        n = len(self.positions_nm)
        steady_on = self.on_rate / (self.on_rate + self.off_rate) if self.on_rate > 0 else 0.0
        self._state = np.where(self._rng.random(n) < steady_on, _ON, _OFF).astype(np.int8)
        self._frame_index = 0
        self._truth: list[np.ndarray] = []

        self._sigma_px = self.psf_sigma_nm / self.pixel_size_nm
        self._radius = max(1, math.ceil(_PSF_REACH_SIGMA * self._sigma_px))
        self._signal = np.zeros((self.width, self.height))
        self._exact_params = self._camera_arrays()
        self._alias: _AliasTable | None = None
        self._counts_per_electron = 0  # > 0: signal pixels may use the additive fast path
        if not self.camera.has_maps:
            values, probs = background_pmf(self.background, self.camera)
            self._alias = _AliasTable(values, probs)
            c = 1.0 / self.camera.electrons_per_count
            if abs(c - round(c)) < 1e-9 and values[0] > 0 and values[-1] < _MAX_ADU:
                self._counts_per_electron = round(c)

    @property
    def n_fluorophores(self) -> int:
        return len(self.positions_nm)

    @property
    def frame_index(self) -> int:
        """Index of the next frame to be generated."""
        return self._frame_index

    def _camera_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offset, gain and read-noise sd as flat arrays: one value, or one per pixel with maps."""
        cam, shape = self.camera, (self.width, self.height)

        def flat(m: np.ndarray | None, scalar: float, what: str) -> np.ndarray:
            if m is None:
                return np.array([scalar], dtype=float)
            m = np.asarray(m, dtype=float)
            if m.shape != shape:
                raise ValueError(f"camera {what} has shape {m.shape}, frames are {shape}")
            return np.ascontiguousarray(m).ravel()

        offset = flat(cam.offset_map, cam.ad_offset, "offset_map")
        gain = flat(cam.gain_map, cam.electrons_per_count, "gain_map")
        if np.any(gain <= 0):
            raise ValueError("camera gain_map must be positive")
        variance = flat(cam.variance_map, cam.read_noise_e ** 2, "variance_map")
        if np.any(variance < 0):
            raise ValueError("camera variance_map must not be negative")
        return offset, gain, np.sqrt(variance)

    # -- photophysics --------------------------------------------------------------------------

    def _emitters_on(self) -> tuple[np.ndarray, np.ndarray]:
        """Fluorophores on in the current frame and their photons; then step the Markov chain."""
        on = np.flatnonzero(self._state == _ON)
        if self.photon_cv > 0 and self.photons > 0:
            shape = 1.0 / self.photon_cv ** 2
            photons = self._rng.gamma(shape, self.photons / shape, on.size)
        else:
            photons = np.full(on.size, self.photons)
        u = self._rng.random(self._state.size)
        state = self._state
        was_on, was_off = state == _ON, state == _OFF
        state[was_off & (u < self.on_rate)] = _ON
        state[was_on & (u < self.bleach_rate)] = _BLEACHED
        state[was_on & (u >= self.bleach_rate) & (u < self.bleach_rate + self.off_rate)] = _OFF
        return on, photons

    # -- frames --------------------------------------------------------------------------------

    def next_frame(self) -> np.ndarray:
        """The next ``uint16`` ADU frame, shape ``(width, height)``, indexed ``[x, y]``."""
        on, photons = self._emitters_on()
        positions = self.positions_nm[on]
        if self.record_ground_truth:
            rows = np.empty(on.size, GROUND_TRUTH_DTYPE)
            rows["frame"] = self._frame_index
            rows["x_nm"], rows["y_nm"] = positions[:, 0], positions[:, 1]
            rows["photons"] = photons
            rows["fluorophore"] = on
            self._truth.append(rows)
        background_key, signal_key = (np.uint64(k) for k in self._rng.integers(0, 2**64, 2, dtype=np.uint64))
        frame = np.empty((self.width, self.height), dtype=np.uint16)
        flat = frame.reshape(-1)
        capacity = min(on.size * (2 * self._radius + 1) ** 2, flat.size)
        touched = np.empty(capacity, dtype=np.int64)
        n_touched = _add_signal(self._signal, touched, positions[:, 0] / self.pixel_size_nm,
                                positions[:, 1] / self.pixel_size_nm, photons, self._sigma_px,
                                self._radius)
        signal = self._signal.reshape(-1)
        if self._alias is None:  # per-pixel camera maps: every pixel drawn exactly
            self._in_parallel(np.arange(flat.size), lambda part: _expose_exact(
                flat, part, signal, self.background, *self._exact_params, signal_key))
        else:
            alias = self._alias
            self._in_parallel(range(flat.size), lambda part: alias.fill(
                flat, part.start, part.stop, background_key))
            if self._counts_per_electron:
                self._in_parallel(touched[:n_touched], lambda part: _add_shot_signal(
                    flat, part, signal, self._counts_per_electron, signal_key))
            else:
                self._in_parallel(touched[:n_touched], lambda part: _expose_exact(
                    flat, part, signal, self.background, *self._exact_params, signal_key))
        self._frame_index += 1
        return frame

    def _in_parallel(self, work, fn) -> None:
        """Call ``fn`` on ``self._threads`` slices of ``work`` at once (one call when small).

        The kernels release the GIL and draw counter-based random numbers, so the result does
        not depend on the split."""
        if self._threads == 1 or len(work) < _PARALLEL_MIN_PIXELS:
            fn(work)
            return
        step = -(-len(work) // self._threads)
        parts = [work[k:k + step] for k in range(0, len(work), step)]
        for future in [_pool().submit(fn, part) for part in parts]:
            future.result()

    def frames(self, n: int) -> Iterator[np.ndarray]:
        """Yield the next ``n`` frames."""
        for _ in range(n):
            yield self.next_frame()

    def expected_image(self, x_nm, y_nm, photons) -> np.ndarray:
        """Noise-free mean ADU image (float, [x, y]) of emitters at the given positions (nm),
        with background and offset, before rounding and clipping."""
        x = np.atleast_1d(np.asarray(x_nm, dtype=float)) / self.pixel_size_nm
        y = np.atleast_1d(np.asarray(y_nm, dtype=float)) / self.pixel_size_nm
        p = np.broadcast_to(np.asarray(photons, dtype=float), x.shape).copy()
        signal = np.zeros((self.width, self.height))
        touched = np.empty(min(x.size * (2 * self._radius + 1) ** 2, signal.size), dtype=np.int64)
        _add_signal(signal, touched, x, y, p, self._sigma_px, self._radius)
        offset, gain, _ = self._exact_params
        shape = (self.width, self.height)
        offset = offset.reshape(shape) if offset.size > 1 else offset[0]
        gain = gain.reshape(shape) if gain.size > 1 else gain[0]
        return (signal + self.background) / gain + offset

    def ground_truth(self) -> np.ndarray:
        """Every emitter that was on in each frame generated so far (:data:`GROUND_TRUTH_DTYPE`)."""
        if not self._truth:
            return np.empty(0, GROUND_TRUTH_DTYPE)
        if len(self._truth) > 1:
            self._truth = [np.concatenate(self._truth)]
        return self._truth[0].copy()

    # -- metadata ------------------------------------------------------------------------------

    def metadata(self) -> dict:
        """PYME metadata for the series: camera (offset in ADU, gain in e⁻/count, read noise in
        e⁻ rms), voxel size (µm, PYME's unit), ``Simulation.*`` parameters and seed."""
        cam = self.camera
        return {
            "Camera.Name": "pyme-desk simulated sCMOS",
            "Camera.ADOffset": float(cam.ad_offset),
            "Camera.ElectronsPerCount": float(cam.electrons_per_count),
            "Camera.TrueEMGain": 1.0,
            "Camera.NoiseFactor": 1.0,
            "Camera.ReadNoise": float(cam.read_noise_e),
            "Camera.ROIWidth": self.width,
            "Camera.ROIHeight": self.height,
            "Camera.IntegrationTime": self.cycle_time_s,
            "Camera.CycleTime": self.cycle_time_s,
            "voxelsize.x": self.pixel_size_nm / 1000.0,
            "voxelsize.y": self.pixel_size_nm / 1000.0,
            "voxelsize.units": "um",
            "StartTime": self.start_time,
            "Simulation.Seed": self.seed,
            "Simulation.Structure": self.structure,
            "Simulation.NumFluorophores": self.n_fluorophores,
            "Simulation.Density": self.density,
            "Simulation.PSFSigmaNm": self.psf_sigma_nm,
            "Simulation.Photons": self.photons,
            "Simulation.PhotonCV": self.photon_cv,
            "Simulation.BackgroundPhotons": self.background,
            "Simulation.OnRate": self.on_rate,
            "Simulation.OffRate": self.off_rate,
            "Simulation.BleachRate": self.bleach_rate,
            "Simulation.CameraMaps": cam.has_maps,
        }
