"""CPU fitter: maximum-likelihood fits of the integrated-Gaussian spot model, many ROIs at once.

The model and its conventions are those of :mod:`pyme_desk.analysis.crlb` (ROIs ``[x, y]``,
pixel ``i`` centred at ``i``, photo-electron units).  Each ROI is fitted by Levenberg–Marquardt
on the Poisson log-likelihood with Fisher scoring (the expected Hessian ``Σ JJᵀ/μ``, which is
positive definite and makes the iteration robust far from the optimum).  With a per-pixel
read-noise variance ``v`` (sCMOS) data and model are both shifted by ``v``.

Bias correction.  The maximum-likelihood estimate (MLE) is unbiased only asymptotically.  With
sigma free on a 7×7 ROI, dim spots have a large sigma uncertainty, and photons and sigma are
strongly correlated (a wider spot puts more of its light outside the ROI and under the
background), so the photon estimate has a long upper tail: at 500 photons on 50 per pixel its
mean is ~6 % high although its median is within ~1 %.  The whole distribution is skewed; it is
not a few runaway fits (none reaches the sigma limit).  Every fit is therefore corrected by its
first-order bias (Cox & Snell 1968) evaluated at the estimate.  For independent Poisson pixels
of mean ``μᵢ(θ)`` that bias is ``b = I⁻¹ Σᵢ Jᵢ ξᵢ/μᵢ`` with ``ξᵢ = −½ tr(I⁻¹ Hᵢ)``, where ``I`` is
the Fisher information and ``Jᵢ``/``Hᵢ`` the gradient/Hessian of ``μᵢ``; ``θ̂ − b(θ̂)`` is
reported.  It has no tuned constant and assumes nothing about the PSF width (unlike a prior on
sigma, which pulls the photons of a wider or narrower PSF far off); it takes the photon,
background and sigma bias of free- and fixed-sigma fits to well under 1 % and leaves the
position precision unchanged.  The price: a mean-unbiased estimate of a skewed quantity has its
median below the truth (about −3 % for photons at 500 photons / 50 per pixel, under 1 % from
1000 photons).  The expansion behind the correction holds while the bias is small against the
noise; where any ``|bₖ|`` exceeds its standard error, or the corrected photons, background or
sigma would leave their valid range (typically a spot wider than the ROI can measure, or no
spot), the MLE is returned uncorrected.  Uncertainties and log-likelihood are those of the
maximum: the inverse Fisher information at the MLE (the correction is of higher order than the
noise, so to first order this is also the corrected estimate's variance) and the maximized
log-likelihood.

Because the model is separable (``μ = b + N·Eₓ(i)·E_y(j)``) one iteration costs 2·(size+1)
erf/exp pairs plus one pass over the pixels, so a 7×7 fit takes a few microseconds.  ROIs are
split into blocks that run in parallel on all cores (numba ``prange``); compiled code is cached
on disk (``cache=True``).

:func:`fit_rois` returns a :class:`FitOutput`: parameters, CRLB standard errors (inverse Fisher
information at the maximum), log-likelihood, iterations and a result code per ROI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

#: Result codes.
CONVERGED = 0
MAX_ITERATIONS = 1  # stopped before the step fell below tolerance (estimate still usable)
OUT_OF_BOUNDS = 2  # position outside the ROI, or sigma at its limits: not a spot
SINGULAR = 3  # the Fisher information could not be inverted (no uncertainty)
NOT_FINITE = 4  # NaN or infinite data or estimate

#: Default limits of sigma (pixels) when it is fitted.
SIGMA_LIMITS = (0.3, 10.0)
DEFAULT_MAX_ITERATIONS = 30
#: Convergence: every step below this (pixels for x, y, sigma; relative for photons, background).
DEFAULT_TOLERANCE = 1e-3

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_BLOCK = 64  # ROIs per parallel work item


@dataclass
class FitOutput:
    """Per-ROI results of :func:`fit_rois`; positions and sigma in ROI pixels.

    ``params`` (bias-corrected, see the module docstring) and ``errors`` have columns (x, y,
    photons, background, sigma); ``errors`` are CRLB standard deviations at the maximum of the
    likelihood (sigma's is 0 when sigma was held fixed).
    """

    params: np.ndarray
    errors: np.ndarray
    log_likelihood: np.ndarray
    iterations: np.ndarray
    result_code: np.ndarray

    def __len__(self) -> int:
        return len(self.params)


@numba.njit(cache=True, fastmath=False, inline="always")
def _axis(centre, sigma, size, e, de, ds, want_sigma):
    """Pixel fractions ``e`` of a 1-D Gaussian, and their derivatives by centre and sigma."""
    scale = 1.0 / (_SQRT2 * sigma)
    norm = _INV_SQRT2PI / sigma
    lo = -0.5 - centre
    erf_lo = math.erf(lo * scale)
    g_lo = math.exp(-0.5 * (lo / sigma) ** 2)
    for i in range(size):
        hi = lo + 1.0
        erf_hi = math.erf(hi * scale)
        g_hi = math.exp(-0.5 * (hi / sigma) ** 2)
        e[i] = 0.5 * (erf_hi - erf_lo)
        de[i] = norm * (g_lo - g_hi)
        if want_sigma:
            ds[i] = norm / sigma * (lo * g_lo - hi * g_hi)
        lo, erf_lo, g_lo = hi, erf_hi, g_hi


@numba.njit(cache=True, fastmath=False)
def _axis_curvature(centre, sigma, size, e, de, ds, dcc, dcs, dss):
    """Pixel fractions of a 1-D Gaussian with first and second derivatives by centre and sigma.

    With ``u = (edge − centre)/sigma`` and ``φ`` the standard normal density, a pixel edge adds
    ``∂Φ/∂c = −φ/σ``, ``∂Φ/∂σ = −uφ/σ``, ``∂²Φ/∂c² = −uφ/σ²``, ``∂²Φ/∂c∂σ = (1 − u²)φ/σ²``
    and ``∂²Φ/∂σ² = (2 − u²)uφ/σ²``; a pixel is its upper edge's term minus its lower edge's.
    """
    scale = 1.0 / _SQRT2
    u_lo = (-0.5 - centre) / sigma
    erf_lo = math.erf(u_lo * scale)
    phi_lo = _INV_SQRT2PI * math.exp(-0.5 * u_lo * u_lo)
    inv_s = 1.0 / sigma
    inv_s2 = inv_s * inv_s
    for i in range(size):
        u_hi = (i + 0.5 - centre) / sigma
        erf_hi = math.erf(u_hi * scale)
        phi_hi = _INV_SQRT2PI * math.exp(-0.5 * u_hi * u_hi)
        e[i] = 0.5 * (erf_hi - erf_lo)
        de[i] = inv_s * (phi_lo - phi_hi)
        ds[i] = inv_s * (u_lo * phi_lo - u_hi * phi_hi)
        dcc[i] = inv_s2 * (u_lo * phi_lo - u_hi * phi_hi)
        dcs[i] = inv_s2 * ((1.0 - u_hi * u_hi) * phi_hi - (1.0 - u_lo * u_lo) * phi_lo)
        dss[i] = inv_s2 * ((2.0 - u_hi * u_hi) * u_hi * phi_hi - (2.0 - u_lo * u_lo) * u_lo * phi_lo)
        u_lo, erf_lo, phi_lo = u_hi, erf_hi, phi_hi


_FAST = {"contract", "arcp", "nsz", "reassoc"}  # no nnan/ninf: the finiteness checks must stay


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _evaluate(roi, var, theta, nparam, ex, dex, dsx, ey, dey, dsy, grad, hess):
    """Log-likelihood at ``theta`` (up to a data-only constant), its gradient and the Fisher
    information (into ``grad``/``hess``).  Returns -inf where the model is not positive.

    Sums run in scalar accumulators (registers); with sigma fixed its column is zero.
    """
    size = roi.shape[0]
    x, y, n, b, s = theta[0], theta[1], theta[2], theta[3], theta[4]
    want_sigma = nparam == 5
    _axis(x, s, size, ex, dex, dsx, want_sigma)
    _axis(y, s, size, ey, dey, dsy, want_sigma)
    if not want_sigma:
        for i in range(size):
            dsx[i] = 0.0
            dsy[i] = 0.0
    llh = 0.0
    g0 = g1 = g2 = g3 = g4 = 0.0
    h00 = h10 = h11 = h20 = h21 = h22 = h30 = h31 = h32 = h33 = 0.0
    h40 = h41 = h42 = h43 = h44 = 0.0
    for i in range(size):
        exi = ex[i]
        ndexi = n * dex[i]
        ndsxi = n * dsx[i]
        for jj in range(size):
            v = var[i, jj]
            eyj = ey[jj]
            pe = exi * eyj
            mu = b + n * pe + v
            if not mu > 0.0:
                return -np.inf
            d = roi[i, jj] + v
            if d > 0.0:
                llh += d * math.log(mu) - mu
            else:
                llh -= mu
            j0 = ndexi * eyj
            j1 = n * exi * dey[jj]
            j2 = pe
            j4 = ndsxi * eyj + n * exi * dsy[jj]
            inv = 1.0 / mu
            r = d * inv - 1.0
            g0 += r * j0
            g1 += r * j1
            g2 += r * j2
            g3 += r
            g4 += r * j4
            w0 = j0 * inv
            w1 = j1 * inv
            w2 = j2 * inv
            w4 = j4 * inv
            h00 += w0 * j0
            h10 += w1 * j0
            h11 += w1 * j1
            h20 += w2 * j0
            h21 += w2 * j1
            h22 += w2 * j2
            h30 += w0
            h31 += w1
            h32 += w2
            h33 += inv
            h40 += w4 * j0
            h41 += w4 * j1
            h42 += w4 * j2
            h43 += w4
            h44 += w4 * j4
    grad[0], grad[1], grad[2], grad[3], grad[4] = g0, g1, g2, g3, g4
    hess[0, 0], hess[1, 1], hess[2, 2], hess[3, 3], hess[4, 4] = h00, h11, h22, h33, h44
    hess[1, 0] = hess[0, 1] = h10
    hess[2, 0] = hess[0, 2] = h20
    hess[2, 1] = hess[1, 2] = h21
    hess[3, 0] = hess[0, 3] = h30
    hess[3, 1] = hess[1, 3] = h31
    hess[3, 2] = hess[2, 3] = h32
    hess[4, 0] = hess[0, 4] = h40
    hess[4, 1] = hess[1, 4] = h41
    hess[4, 2] = hess[2, 4] = h42
    hess[4, 3] = hess[3, 4] = h43
    return llh


@numba.njit(cache=True, inline="always")
def _cholesky_solve(a, rhs, nparam, out, work):
    """Solve ``a·out = rhs`` for symmetric positive definite ``a``; False if it is not."""
    for i in range(nparam):
        for k in range(i + 1):
            acc = a[i, k]
            for m in range(k):
                acc -= work[i, m] * work[k, m]
            if i == k:
                if not acc > 0.0:
                    return False
                work[i, i] = math.sqrt(acc)
            else:
                work[i, k] = acc / work[k, k]
    for i in range(nparam):
        acc = rhs[i]
        for m in range(i):
            acc -= work[i, m] * out[m]
        out[i] = acc / work[i, i]
    for i in range(nparam - 1, -1, -1):
        acc = out[i]
        for m in range(i + 1, nparam):
            acc -= work[m, i] * out[m]
        out[i] = acc / work[i, i]
    return True


@numba.njit(cache=True)
def _invert(a, nparam, inv, rhs, col, work):
    """``inv`` = ``a⁻¹`` for symmetric positive definite ``a``; False if it is not."""
    for k in range(nparam):
        for m in range(nparam):
            rhs[m] = 0.0
        rhs[k] = 1.0
        if not _cholesky_solve(a, rhs, nparam, col, work):
            return False
        for m in range(nparam):
            inv[m, k] = col[m]
    return True


@numba.njit(cache=True, fastmath=_FAST)
def _first_order_bias(var, theta, nparam, inv, axes, bias):
    """Cox–Snell first-order bias of the maximum-likelihood estimate at ``theta``, into ``bias``.

    For independent Poisson pixels of mean ``μᵢ(θ)`` the O(1/information) bias is
    ``b = I⁻¹ Σᵢ Jᵢ ξᵢ / μᵢ`` with ``ξᵢ = −½ tr(I⁻¹ Hᵢ)``, where ``I`` is the Fisher information
    (``inv`` holds ``I⁻¹``), ``Jᵢ`` the gradient and ``Hᵢ`` the Hessian of ``μᵢ`` by the
    parameters.  ``axes`` is scratch for the pixel fractions and their derivatives.
    """
    size = var.shape[0]
    x, y, n, s = theta[0], theta[1], theta[2], theta[4]
    ex, dex, dsx, cxx, cxs, cxss = axes[0], axes[1], axes[2], axes[3], axes[4], axes[5]
    ey, dey, dsy, cyy, cys, cyss = axes[6], axes[7], axes[8], axes[9], axes[10], axes[11]
    _axis_curvature(x, s, size, ex, dex, dsx, cxx, cxs, cxss)
    _axis_curvature(y, s, size, ey, dey, dsy, cyy, cys, cyss)
    a00, a11, a01, a02, a12 = inv[0, 0], inv[1, 1], inv[0, 1], inv[0, 2], inv[1, 2]
    a44 = a04 = a14 = a24 = 0.0
    if nparam == 5:
        a44, a04, a14, a24 = inv[4, 4], inv[0, 4], inv[1, 4], inv[2, 4]
    v0 = v1 = v2 = v3 = v4 = 0.0
    for i in range(size):
        for jj in range(size):
            pe = ex[i] * ey[jj]
            mu = theta[3] + n * pe + var[i, jj]
            # trace of I⁻¹ times the Hessian of μ (background enters linearly: no terms)
            tr = (a00 * n * cxx[i] * ey[jj] + a11 * n * ex[i] * cyy[jj]
                  + 2.0 * (a01 * n * dex[i] * dey[jj] + a02 * dex[i] * ey[jj] + a12 * ex[i] * dey[jj]))
            j4 = 0.0
            if nparam == 5:
                j4 = n * (dsx[i] * ey[jj] + ex[i] * dsy[jj])
                h44 = n * (cxss[i] * ey[jj] + 2.0 * dsx[i] * dsy[jj] + ex[i] * cyss[jj])
                h04 = n * (cxs[i] * ey[jj] + dex[i] * dsy[jj])
                h14 = n * (dsx[i] * dey[jj] + ex[i] * cys[jj])
                h24 = dsx[i] * ey[jj] + ex[i] * dsy[jj]
                tr += a44 * h44 + 2.0 * (a04 * h04 + a14 * h14 + a24 * h24)
            xi = -0.5 * tr / mu
            v0 += n * dex[i] * ey[jj] * xi
            v1 += n * ex[i] * dey[jj] * xi
            v2 += pe * xi
            v3 += xi
            v4 += j4 * xi
    for k in range(nparam):
        bias[k] = inv[k, 0] * v0 + inv[k, 1] * v1 + inv[k, 2] * v2 + inv[k, 3] * v3
        if nparam == 5:
            bias[k] += inv[k, 4] * v4


@numba.njit(cache=True)
def _initial(roi, var, sigma, theta):
    """Start values: background from the ROI border, photons above it, centroid position."""
    size = roi.shape[0]
    border = 0.0
    count = 0
    for i in range(size):
        for jj in range(size):
            if i == 0 or jj == 0 or i == size - 1 or jj == size - 1:
                border += roi[i, jj]
                count += 1
    b = border / count
    total = 0.0
    sx = 0.0
    sy = 0.0
    for i in range(size):
        for jj in range(size):
            w = roi[i, jj] - b
            if w > 0.0:
                total += w
                sx += w * i
                sy += w * jj
    centre = (size - 1) / 2.0
    theta[0] = sx / total if total > 0.0 else centre
    theta[1] = sy / total if total > 0.0 else centre
    raw = 0.0
    for i in range(size):
        for jj in range(size):
            raw += roi[i, jj] - b
    theta[2] = max(raw, 1.0)
    theta[3] = max(b, 1e-3)
    theta[4] = sigma


@numba.njit(cache=True)
def _fit_one(roi, var, sigma, nparam, sigma_lo, sigma_hi, max_iter, tol, theta, err, scratch_1d, mats):
    """Fit one ROI in place into ``theta``/``err``; returns (log-likelihood, iterations, code)."""
    size = roi.shape[0]
    ex = scratch_1d[0]
    dex = scratch_1d[1]
    dsx = scratch_1d[2]
    ey = scratch_1d[3]
    dey = scratch_1d[4]
    dsy = scratch_1d[5]
    grad = scratch_1d[6]
    step = scratch_1d[7]
    trial = scratch_1d[8]
    trial_grad = scratch_1d[9]
    bias = scratch_1d[10]
    axes = scratch_1d[11:]
    hess = mats[0]
    trial_hess = mats[1]
    damped = mats[2]
    work = mats[3]
    inverse = mats[4]
    for i in range(size):
        for jj in range(size):
            if not math.isfinite(roi[i, jj]):
                for k in range(5):
                    theta[k] = np.nan
                    err[k] = np.nan
                return np.nan, 0, NOT_FINITE
    _initial(roi, var, sigma, theta)
    llh = _evaluate(roi, var, theta, nparam, ex, dex, dsx, ey, dey, dsy, grad, hess)
    lam = 1e-3
    code = MAX_ITERATIONS
    iterations = 0
    for it in range(max_iter):
        iterations = it + 1
        accepted = False
        for _attempt in range(12):
            for k in range(nparam):
                for m in range(nparam):
                    damped[k, m] = hess[k, m]
                damped[k, k] = hess[k, k] * (1.0 + lam)
            if not _cholesky_solve(damped, grad, nparam, step, work):
                lam *= 10.0
                continue
            for k in range(5):
                trial[k] = theta[k]
            for k in range(nparam):
                trial[k] = theta[k] + step[k]
            # keep photons and background positive, sigma within its limits
            if trial[2] <= 0.0:
                trial[2] = 0.1 * theta[2]
            if trial[3] <= 0.0:
                trial[3] = 0.1 * theta[3]
            if nparam == 5:
                trial[4] = min(max(trial[4], sigma_lo), sigma_hi)
            new_llh = _evaluate(roi, var, trial, nparam, ex, dex, dsx, ey, dey, dsy, trial_grad,
                                trial_hess)
            if new_llh >= llh:
                accepted = True
                break
            lam *= 10.0
        if not accepted:
            code = CONVERGED  # no step improves the likelihood: at the optimum (to precision)
            break
        small = (abs(trial[0] - theta[0]) < tol and abs(trial[1] - theta[1]) < tol
                 and abs(trial[2] - theta[2]) < tol * theta[2] and abs(trial[3] - theta[3]) < tol * max(theta[3], 1.0)
                 and (nparam == 4 or abs(trial[4] - theta[4]) < tol))
        for k in range(5):
            theta[k] = trial[k]
        for k in range(nparam):
            grad[k] = trial_grad[k]
            for m in range(nparam):
                hess[k, m] = trial_hess[k, m]
        llh = new_llh
        lam = max(lam * 0.1, 1e-7)
        if small:
            code = CONVERGED
            break
    # uncertainties (inverse Fisher information at the maximum), then the bias correction
    for k in range(5):
        err[k] = 0.0
    singular = not _invert(hess, nparam, inverse, step, trial_grad, work)
    if not singular:
        for k in range(nparam):
            err[k] = math.sqrt(inverse[k, k]) if inverse[k, k] > 0.0 else np.nan
        _first_order_bias(var, theta, nparam, inverse, axes, bias)
        small = True
        for k in range(nparam):
            small = small and abs(bias[k]) <= err[k]
        if (small and theta[2] - bias[2] > 0.0 and theta[3] - bias[3] > 0.0
                and (nparam == 4 or sigma_lo < theta[4] - bias[4] < sigma_hi)):
            for k in range(nparam):
                theta[k] -= bias[k]
    # full log-likelihood, including the data-only term
    for i in range(size):
        for jj in range(size):
            d = roi[i, jj] + var[i, jj]
            if d > 0.0:
                llh -= math.lgamma(d + 1.0)
    if not (math.isfinite(theta[0]) and math.isfinite(theta[1]) and math.isfinite(theta[2])
            and math.isfinite(theta[3]) and math.isfinite(theta[4])):
        return llh, iterations, NOT_FINITE
    if singular:
        return llh, iterations, SINGULAR
    if (theta[0] < -0.5 or theta[0] > size - 0.5 or theta[1] < -0.5 or theta[1] > size - 0.5
            or (nparam == 5 and (theta[4] <= sigma_lo or theta[4] >= sigma_hi))):
        return llh, iterations, OUT_OF_BOUNDS
    return llh, iterations, code


@numba.njit(cache=True, parallel=True)
def _fit_all(rois, var, per_roi_var, sigmas, nparam, sigma_lo, sigma_hi, max_iter, tol,
             params, errors, llh, iterations, codes):
    n = rois.shape[0]
    size = rois.shape[1]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for block in numba.prange(n_blocks):
        scratch = np.empty((23, max(size, 5)))
        mats = np.zeros((5, 5, 5))
        theta = np.empty(5)
        err = np.empty(5)
        start = block * _BLOCK
        stop = min(start + _BLOCK, n)
        for r in range(start, stop):
            v = var[r] if per_roi_var else var[0]
            value, its, code = _fit_one(rois[r], v, sigmas[r], nparam, sigma_lo, sigma_hi, max_iter,
                                        tol, theta, err, scratch, mats)
            for k in range(5):
                params[r, k] = theta[k]
                errors[r, k] = err[k]
            llh[r] = value
            iterations[r] = its
            codes[r] = code


def fit_rois(rois: np.ndarray, sigma: float | np.ndarray = 1.3, *, fit_sigma: bool = True,
             variance: np.ndarray | None = None, sigma_limits: tuple[float, float] = SIGMA_LIMITS,
             max_iterations: int = DEFAULT_MAX_ITERATIONS,
             tolerance: float = DEFAULT_TOLERANCE) -> FitOutput:
    """Fit every ROI of ``rois`` (shape ``(n, size, size)``, photo-electrons, indexed ``[x, y]``).

    ``sigma``: the PSF sigma in pixels (one value, or one per ROI): the fixed value, or the
    start value when ``fit_sigma``.  ``variance``: sCMOS read-noise variance (photo-electrons²)
    per pixel, shape ``(n, size, size)`` or ``(size, size)`` for all ROIs; None for none.
    """
    rois = np.ascontiguousarray(rois, dtype=np.float64)
    if rois.ndim != 3 or rois.shape[1] != rois.shape[2] or rois.shape[1] < 3:
        raise ValueError(f"rois must have shape (n, size, size) with size >= 3, not {rois.shape}")
    n, size = rois.shape[0], rois.shape[1]
    if variance is None:
        var, per_roi = np.zeros((1, size, size)), False
    else:
        var = np.asarray(variance, dtype=np.float64)
        per_roi = var.ndim == 3
        var = np.ascontiguousarray(var if per_roi else var[None])
        if var.shape[1:] != (size, size) or (per_roi and var.shape[0] != n):
            raise ValueError(f"variance has shape {np.shape(variance)}, ROIs are {rois.shape}")
        if np.any(var < 0):
            raise ValueError("variance must not be negative")
    sigmas = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n,)))
    if np.any(~(sigmas > 0)):
        raise ValueError("sigma must be positive")
    out = FitOutput(params=np.empty((n, 5)), errors=np.empty((n, 5)), log_likelihood=np.empty(n),
                    iterations=np.empty(n, np.int32), result_code=np.empty(n, np.int32))
    if n:
        _fit_all(rois, var, per_roi, sigmas, 5 if fit_sigma else 4, float(sigma_limits[0]),
                 float(sigma_limits[1]), int(max_iterations), float(tolerance), out.params, out.errors,
                 out.log_likelihood, out.iterations, out.result_code)
    return out
