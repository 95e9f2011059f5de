"""Localization results as PYME-style ``FitResults`` rows.

One row per fitted spot, a nested structured dtype as PYME's Gaussian fit modules write it, so
PYME's viewers read our ``.h5r`` files (flattened column names ``fitResults_x0``,
``fitError_x0``, ...):

* ``tIndex``: frame index;
* ``fitResults``: ``A`` (peak amplitude, photo-electrons), ``x0``/``y0`` (nm, pixel ``i`` of
  the frame centred at ``i · voxelsize``), ``sigma`` (nm), ``background`` (photo-electrons per
  pixel), ``photons`` (total photo-electrons in the spot);
* ``fitError``: the CRLB standard error of each of those (same units; sigma's is 0 when it
  was held fixed);
* ``resultCode`` (0 converged, see :mod:`pyme_desk.analysis.fit_cpu`), ``LLH`` (Poisson
  log-likelihood), ``nIterations``, ``roiOrigin`` (``[x, y]`` of the ROI's first pixel).
"""
from __future__ import annotations

import math

import numpy as np

_FIELDS = [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4"), ("sigma", "<f4"), ("background", "<f4"),
           ("photons", "<f4")]

FIT_RESULTS_DTYPE = np.dtype([
    ("tIndex", "<i4"),
    ("fitResults", _FIELDS),
    ("fitError", _FIELDS),
    ("resultCode", "<i4"),
    ("LLH", "<f4"),
    ("nIterations", "<i4"),
    ("roiOrigin", "<i4", (2,)),
])


def fit_results(t_index: int | np.ndarray, params: np.ndarray, errors: np.ndarray, origins: np.ndarray,
                pixel_size_nm: tuple[float, float], log_likelihood: np.ndarray, iterations: np.ndarray,
                result_code: np.ndarray) -> np.ndarray:
    """Rows of :data:`FIT_RESULTS_DTYPE` from fitter output (ROI pixels, columns
    x, y, photons, background, sigma) and each ROI's ``[x, y]`` origin in the frame."""
    n = len(params)
    rows = np.zeros(n, FIT_RESULTS_DTYPE)
    if n == 0:
        return rows
    px, py = pixel_size_nm
    mean_px = math.sqrt(px * py)
    sigma = params[:, 4]
    rows["tIndex"] = t_index
    fr, fe = rows["fitResults"], rows["fitError"]
    fr["x0"] = (origins[:, 0] + params[:, 0]) * px
    fr["y0"] = (origins[:, 1] + params[:, 1]) * py
    fr["photons"] = params[:, 2]
    fr["background"] = params[:, 3]
    fr["sigma"] = sigma * mean_px
    amplitude = params[:, 2] / (2 * math.pi * sigma ** 2)
    fr["A"] = amplitude
    fe["x0"] = errors[:, 0] * px
    fe["y0"] = errors[:, 1] * py
    fe["photons"] = errors[:, 2]
    fe["background"] = errors[:, 3]
    fe["sigma"] = errors[:, 4] * mean_px
    # first-order propagation of the photon and sigma errors to the amplitude
    fe["A"] = amplitude * np.sqrt((errors[:, 2] / params[:, 2]) ** 2 + (2 * errors[:, 4] / sigma) ** 2)
    rows["resultCode"] = result_code
    rows["LLH"] = log_likelihood
    rows["nIterations"] = iterations
    rows["roiOrigin"] = origins
    return rows
