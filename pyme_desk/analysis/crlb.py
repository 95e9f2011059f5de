"""The spot model and its Cramér-Rao lower bound, computed numerically.

The model is the one every fitter in this package uses: a 2-D Gaussian of width ``sigma``
(pixels) integrated over square pixels, ``photons`` in total, on a flat ``background``
(photons per pixel), seen under Poisson noise.  Pixel ``i`` of a ROI is centred at ``i`` and
covers ``[i - ½, i + ½)``; ROIs are indexed ``[x, y]``.  For an sCMOS camera each pixel adds
Gaussian read noise of variance ``v`` (photo-electrons²), handled as in Huang et al. (2013) by
adding ``v`` to both data and model, so the Fisher information uses ``mu + v``.

The Fisher information here is deliberately independent of the fitters' analytic derivatives:
it differentiates :func:`expected_roi` by central finite differences, so the tests that compare
fit errors against it also check the fitters' gradients.
"""
from __future__ import annotations

import math

import numpy as np

#: Parameter order of every fitter and of the Fisher matrices here.
PARAMETERS = ("x", "y", "photons", "background", "sigma")

_ERF = np.vectorize(math.erf, otypes=[float])


def _pixel_fractions(centre: float, sigma: float, size: int) -> np.ndarray:
    """Fraction of a unit 1-D Gaussian falling in each of ``size`` unit pixels."""
    edges = (np.arange(size + 1) - 0.5 - centre) / (math.sqrt(2.0) * sigma)
    return 0.5 * np.diff(_ERF(edges))


def expected_roi(x: float, y: float, photons: float, background: float, sigma: float,
                 size: int = 7) -> np.ndarray:
    """Mean photon count of each pixel of a ``size``×``size`` ROI (indexed ``[x, y]``)."""
    ex = _pixel_fractions(x, sigma, size)
    ey = _pixel_fractions(y, sigma, size)
    return background + photons * np.outer(ex, ey)


def fisher_information(x: float, y: float, photons: float, background: float, sigma: float,
                       size: int = 7, fit_sigma: bool = True,
                       variance: np.ndarray | float = 0.0) -> np.ndarray:
    """Fisher information matrix of (x, y, photons, background[, sigma]) at one parameter set."""
    theta = np.array([x, y, photons, background, sigma], dtype=float)
    n = 5 if fit_sigma else 4
    steps = np.array([1e-4, 1e-4, max(1e-6 * photons, 1e-4), max(1e-6 * background, 1e-5), 1e-5])
    mu = expected_roi(*theta, size=size) + variance
    jac = np.empty((n, size, size))
    for k in range(n):
        up, down = theta.copy(), theta.copy()
        up[k] += steps[k]
        down[k] -= steps[k]
        jac[k] = (expected_roi(*up, size=size) - expected_roi(*down, size=size)) / (2 * steps[k])
    flat = jac.reshape(n, -1)
    return (flat / mu.reshape(-1)) @ flat.T


def crlb(x: float, y: float, photons: float, background: float, sigma: float, size: int = 7,
         fit_sigma: bool = True, variance: np.ndarray | float = 0.0) -> np.ndarray:
    """Lower bounds of the standard deviations of (x, y, photons, background[, sigma])."""
    info = fisher_information(x, y, photons, background, sigma, size, fit_sigma, variance)
    return np.sqrt(np.diag(np.linalg.inv(info)))


def mean_crlb(photons: float, background: float, sigma: float = 1.3, size: int = 7,
              fit_sigma: bool = True, n_positions: int = 11) -> np.ndarray:
    """CRLB of each parameter, RMS over a grid of sub-pixel positions around the ROI centre.

    The grid has ``n_positions``² points spread evenly over ``[-½, ½)`` pixel in x and y.
    """
    offsets = (np.arange(n_positions) + 0.5) / n_positions - 0.5
    centre = (size - 1) / 2
    bounds = [crlb(centre + dx, centre + dy, photons, background, sigma, size, fit_sigma)
              for dx in offsets for dy in offsets]
    return np.sqrt(np.mean(np.square(bounds), axis=0))


def simulate_rois(n: int, photons: float, background: float, sigma: float = 1.3, size: int = 7,
                  rng: np.random.Generator | None = None, jitter: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Poisson-noise ROIs of one spot each, and their true (x, y) in ROI pixels.

    Positions are uniform within ``±jitter`` pixel of the ROI centre.  For tests and benchmarks.
    """
    rng = rng or np.random.default_rng()
    centre = (size - 1) / 2
    truth = centre + rng.uniform(-jitter, jitter, (n, 2))
    edges = np.arange(size + 1) - 0.5
    scale = math.sqrt(2.0) * sigma
    ex = 0.5 * np.diff(_ERF((edges[None, :] - truth[:, :1]) / scale), axis=1)
    ey = 0.5 * np.diff(_ERF((edges[None, :] - truth[:, 1:]) / scale), axis=1)
    mean = background + photons * ex[:, :, None] * ey[:, None, :]
    return rng.poisson(mean).astype(np.float64), truth
