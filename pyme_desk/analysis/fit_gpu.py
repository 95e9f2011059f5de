"""GPU fitter: the CPU fitter's algorithm as a CUDA kernel, one thread per ROI (pycuda).

Same model, start values, Levenberg–Marquardt / Fisher-scoring iteration, limits, convergence
test, first-order bias correction and result codes as :mod:`pyme_desk.analysis.fit_cpu`, in
double precision, so the two
agree to numerical tolerance.  ROIs travel to the GPU in large batches (one host→device copy
in, one device→host copy of all results out per batch).

pycuda is optional (``pip install pyme-desk[gpu]``) and imported only when a GPU fit is asked
for; :func:`gpu_available` says whether this machine can run one and, if not, why.
"""
from __future__ import annotations

import functools

import numpy as np

from pyme_desk.analysis.fit_cpu import (DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, SIGMA_LIMITS,
                                        FitOutput)

#: Largest ROI side the kernel handles.
MAX_ROI_SIZE = 32
#: ROIs per kernel launch (bounds device memory: ~8 KiB per 7×7 ROI with results).
BATCH = 1 << 20
_THREADS = 128

KERNEL_SOURCE = r"""
#define MAXS %(max_size)d

__device__ void axis(double c, double s, int size, double *e, double *de, double *ds, bool want_s)
{
    const double scale = 0.70710678118654752440 / s;
    const double norm = 0.39894228040143267794 / s;
    double lo = -0.5 - c;
    double erf_lo = erf(lo * scale);
    double g_lo = exp(-0.5 * (lo / s) * (lo / s));
    for (int i = 0; i < size; ++i) {
        double hi = lo + 1.0;
        double erf_hi = erf(hi * scale);
        double g_hi = exp(-0.5 * (hi / s) * (hi / s));
        e[i] = 0.5 * (erf_hi - erf_lo);
        de[i] = norm * (g_lo - g_hi);
        if (want_s) ds[i] = norm / s * (lo * g_lo - hi * g_hi);
        lo = hi; erf_lo = erf_hi; g_lo = g_hi;
    }
}

__device__ void axis_curvature(double c, double s, int size, double *e, double *de, double *ds,
                               double *dcc, double *dcs, double *dss)
{
    const double inv_s = 1.0 / s, inv_s2 = inv_s * inv_s;
    double u_lo = (-0.5 - c) / s;
    double erf_lo = erf(u_lo * 0.70710678118654752440);
    double phi_lo = 0.39894228040143267794 * exp(-0.5 * u_lo * u_lo);
    for (int i = 0; i < size; ++i) {
        const double u_hi = (i + 0.5 - c) / s;
        const double erf_hi = erf(u_hi * 0.70710678118654752440);
        const double phi_hi = 0.39894228040143267794 * exp(-0.5 * u_hi * u_hi);
        e[i] = 0.5 * (erf_hi - erf_lo);
        de[i] = inv_s * (phi_lo - phi_hi);
        ds[i] = inv_s * (u_lo * phi_lo - u_hi * phi_hi);
        dcc[i] = inv_s2 * (u_lo * phi_lo - u_hi * phi_hi);
        dcs[i] = inv_s2 * ((1.0 - u_hi * u_hi) * phi_hi - (1.0 - u_lo * u_lo) * phi_lo);
        dss[i] = inv_s2 * ((2.0 - u_hi * u_hi) * u_hi * phi_hi - (2.0 - u_lo * u_lo) * u_lo * phi_lo);
        u_lo = u_hi; erf_lo = erf_hi; phi_lo = phi_hi;
    }
}

__device__ double evaluate(const float *roi, const float *var, int size, const double *t, int np,
                           double *grad, double *hess)
{
    double ex[MAXS], dex[MAXS], dsx[MAXS], ey[MAXS], dey[MAXS], dsy[MAXS];
    const bool want_s = (np == 5);
    axis(t[0], t[4], size, ex, dex, dsx, want_s);
    axis(t[1], t[4], size, ey, dey, dsy, want_s);
    if (!want_s) for (int i = 0; i < size; ++i) { dsx[i] = 0.0; dsy[i] = 0.0; }
    const double n = t[2], b = t[3];
    double llh = 0.0, g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0;
    double h00 = 0, h10 = 0, h11 = 0, h20 = 0, h21 = 0, h22 = 0, h30 = 0, h31 = 0, h32 = 0, h33 = 0;
    double h40 = 0, h41 = 0, h42 = 0, h43 = 0, h44 = 0;
    for (int i = 0; i < size; ++i) {
        const double exi = ex[i], ndexi = n * dex[i], ndsxi = n * dsx[i];
        for (int q = 0; q < size; ++q) {
            const double v = var[i * size + q];
            const double eyq = ey[q];
            const double pe = exi * eyq;
            const double mu = b + n * pe + v;
            if (!(mu > 0.0)) return -INFINITY;
            const double d = roi[i * size + q] + v;
            llh += (d > 0.0) ? d * log(mu) - mu : -mu;
            const double j0 = ndexi * eyq, j1 = n * exi * dey[q], j2 = pe;
            const double j4 = ndsxi * eyq + n * exi * dsy[q];
            const double inv = 1.0 / mu, r = d * inv - 1.0;
            g0 += r * j0; g1 += r * j1; g2 += r * j2; g3 += r; g4 += r * j4;
            const double w0 = j0 * inv, w1 = j1 * inv, w2 = j2 * inv, w4 = j4 * inv;
            h00 += w0 * j0; h10 += w1 * j0; h11 += w1 * j1; h20 += w2 * j0; h21 += w2 * j1; h22 += w2 * j2;
            h30 += w0; h31 += w1; h32 += w2; h33 += inv;
            h40 += w4 * j0; h41 += w4 * j1; h42 += w4 * j2; h43 += w4; h44 += w4 * j4;
        }
    }
    grad[0] = g0; grad[1] = g1; grad[2] = g2; grad[3] = g3; grad[4] = g4;
    hess[0] = h00; hess[6] = h11; hess[12] = h22; hess[18] = h33; hess[24] = h44;
    hess[5] = hess[1] = h10; hess[10] = hess[2] = h20; hess[11] = hess[7] = h21;
    hess[15] = hess[3] = h30; hess[16] = hess[8] = h31; hess[17] = hess[13] = h32;
    hess[20] = hess[4] = h40; hess[21] = hess[9] = h41; hess[22] = hess[14] = h42; hess[23] = hess[19] = h43;
    return llh;
}

__device__ bool chol_solve(const double *a, const double *rhs, int np, double *out)
{
    double w[25];
    for (int i = 0; i < np; ++i) {
        for (int k = 0; k <= i; ++k) {
            double acc = a[i * 5 + k];
            for (int m = 0; m < k; ++m) acc -= w[i * 5 + m] * w[k * 5 + m];
            if (i == k) { if (!(acc > 0.0)) return false; w[i * 5 + i] = sqrt(acc); }
            else w[i * 5 + k] = acc / w[k * 5 + k];
        }
    }
    for (int i = 0; i < np; ++i) {
        double acc = rhs[i];
        for (int m = 0; m < i; ++m) acc -= w[i * 5 + m] * out[m];
        out[i] = acc / w[i * 5 + i];
    }
    for (int i = np - 1; i >= 0; --i) {
        double acc = out[i];
        for (int m = i + 1; m < np; ++m) acc -= w[m * 5 + i] * out[m];
        out[i] = acc / w[i * 5 + i];
    }
    return true;
}

__device__ bool invert(const double *a, int np, double *inv)
{
    double unit[5], col[5];
    for (int k = 0; k < np; ++k) {
        for (int m = 0; m < np; ++m) unit[m] = 0.0;
        unit[k] = 1.0;
        if (!chol_solve(a, unit, np, col)) return false;
        for (int m = 0; m < np; ++m) inv[m * 5 + k] = col[m];
    }
    return true;
}

// Cox-Snell first-order bias of the MLE at t (inv = inverse Fisher information)
__device__ void first_order_bias(const float *var, int size, const double *t, int np, const double *inv,
                                 double *bias)
{
    double ex[MAXS], dex[MAXS], dsx[MAXS], cxx[MAXS], cxs[MAXS], cxss[MAXS];
    double ey[MAXS], dey[MAXS], dsy[MAXS], cyy[MAXS], cys[MAXS], cyss[MAXS];
    axis_curvature(t[0], t[4], size, ex, dex, dsx, cxx, cxs, cxss);
    axis_curvature(t[1], t[4], size, ey, dey, dsy, cyy, cys, cyss);
    const double n = t[2];
    const double a00 = inv[0], a11 = inv[6], a01 = inv[1], a02 = inv[2], a12 = inv[7];
    const double a44 = np == 5 ? inv[24] : 0.0, a04 = np == 5 ? inv[4] : 0.0;
    const double a14 = np == 5 ? inv[9] : 0.0, a24 = np == 5 ? inv[14] : 0.0;
    double v0 = 0, v1 = 0, v2 = 0, v3 = 0, v4 = 0;
    for (int i = 0; i < size; ++i) {
        for (int q = 0; q < size; ++q) {
            const double pe = ex[i] * ey[q];
            const double mu = t[3] + n * pe + var[i * size + q];
            double tr = a00 * n * cxx[i] * ey[q] + a11 * n * ex[i] * cyy[q]
                + 2.0 * (a01 * n * dex[i] * dey[q] + a02 * dex[i] * ey[q] + a12 * ex[i] * dey[q]);
            double j4 = 0.0;
            if (np == 5) {
                j4 = n * (dsx[i] * ey[q] + ex[i] * dsy[q]);
                const double h44 = n * (cxss[i] * ey[q] + 2.0 * dsx[i] * dsy[q] + ex[i] * cyss[q]);
                const double h04 = n * (cxs[i] * ey[q] + dex[i] * dsy[q]);
                const double h14 = n * (dsx[i] * dey[q] + ex[i] * cys[q]);
                const double h24 = dsx[i] * ey[q] + ex[i] * dsy[q];
                tr += a44 * h44 + 2.0 * (a04 * h04 + a14 * h14 + a24 * h24);
            }
            const double xi = -0.5 * tr / mu;
            v0 += n * dex[i] * ey[q] * xi;
            v1 += n * ex[i] * dey[q] * xi;
            v2 += pe * xi;
            v3 += xi;
            v4 += j4 * xi;
        }
    }
    for (int k = 0; k < np; ++k) {
        bias[k] = inv[k * 5] * v0 + inv[k * 5 + 1] * v1 + inv[k * 5 + 2] * v2 + inv[k * 5 + 3] * v3;
        if (np == 5) bias[k] += inv[k * 5 + 4] * v4;
    }
}

extern "C" __global__ void fit_kernel(const float *rois, const float *vars, int per_roi_var,
    const double *sigmas, int n, int size, int np, double sigma_lo, double sigma_hi, int max_iter,
    double tol, double *params, double *errors, double *llh_out, int *iter_out, int *code_out)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const int npx = size * size;
    const float *roi = rois + (size_t)r * npx;
    const float *var = vars + (per_roi_var ? (size_t)r * npx : 0);
    double t[5], trial[5], grad[5], tgrad[5], step[5], hess[25], thess[25], damped[25], err[5];
    for (int p = 0; p < npx; ++p) {
        if (!isfinite(roi[p])) {
            for (int k = 0; k < 5; ++k) { params[r * 5 + k] = NAN; errors[r * 5 + k] = NAN; }
            llh_out[r] = NAN; iter_out[r] = 0; code_out[r] = 4; return;
        }
    }
    // start values
    double border = 0.0; int count = 0;
    for (int i = 0; i < size; ++i) for (int q = 0; q < size; ++q)
        if (i == 0 || q == 0 || i == size - 1 || q == size - 1) { border += roi[i * size + q]; ++count; }
    const double b0 = border / count;
    double total = 0.0, sx = 0.0, sy = 0.0, raw = 0.0;
    for (int i = 0; i < size; ++i) for (int q = 0; q < size; ++q) {
        const double w = roi[i * size + q] - b0;
        raw += w;
        if (w > 0.0) { total += w; sx += w * i; sy += w * q; }
    }
    const double centre = 0.5 * (size - 1);
    t[0] = total > 0.0 ? sx / total : centre;
    t[1] = total > 0.0 ? sy / total : centre;
    t[2] = fmax(raw, 1.0);
    t[3] = fmax(b0, 1e-3);
    t[4] = sigmas[r];
    double llh = evaluate(roi, var, size, t, np, grad, hess);
    double lam = 1e-3;
    int code = 1, iterations = 0;
    for (int it = 0; it < max_iter; ++it) {
        iterations = it + 1;
        bool accepted = false;
        double new_llh = 0.0;
        for (int attempt = 0; attempt < 12; ++attempt) {
            for (int k = 0; k < np; ++k) {
                for (int m = 0; m < np; ++m) damped[k * 5 + m] = hess[k * 5 + m];
                damped[k * 5 + k] = hess[k * 5 + k] * (1.0 + lam);
            }
            if (!chol_solve(damped, grad, np, step)) { lam *= 10.0; continue; }
            for (int k = 0; k < 5; ++k) trial[k] = t[k];
            for (int k = 0; k < np; ++k) trial[k] = t[k] + step[k];
            if (trial[2] <= 0.0) trial[2] = 0.1 * t[2];
            if (trial[3] <= 0.0) trial[3] = 0.1 * t[3];
            if (np == 5) trial[4] = fmin(fmax(trial[4], sigma_lo), sigma_hi);
            new_llh = evaluate(roi, var, size, trial, np, tgrad, thess);
            if (new_llh >= llh) { accepted = true; break; }
            lam *= 10.0;
        }
        if (!accepted) { code = 0; break; }
        const bool small = fabs(trial[0] - t[0]) < tol && fabs(trial[1] - t[1]) < tol
            && fabs(trial[2] - t[2]) < tol * t[2] && fabs(trial[3] - t[3]) < tol * fmax(t[3], 1.0)
            && (np == 4 || fabs(trial[4] - t[4]) < tol);
        for (int k = 0; k < 5; ++k) t[k] = trial[k];
        for (int k = 0; k < np; ++k) { grad[k] = tgrad[k]; for (int m = 0; m < np; ++m) hess[k * 5 + m] = thess[k * 5 + m]; }
        llh = new_llh;
        lam = fmax(lam * 0.1, 1e-7);
        if (small) { code = 0; break; }
    }
    // uncertainties (inverse Fisher information at the maximum), then the bias correction
    for (int k = 0; k < 5; ++k) err[k] = 0.0;
    double inv[25], bias[5];
    const bool singular = !invert(hess, np, inv);
    if (!singular) {
        for (int k = 0; k < np; ++k) err[k] = inv[k * 5 + k] > 0.0 ? sqrt(inv[k * 5 + k]) : NAN;
        first_order_bias(var, size, t, np, inv, bias);
        bool small = true;
        for (int k = 0; k < np; ++k) small = small && fabs(bias[k]) <= err[k];
        if (small && t[2] - bias[2] > 0.0 && t[3] - bias[3] > 0.0
            && (np == 4 || (sigma_lo < t[4] - bias[4] && t[4] - bias[4] < sigma_hi)))
            for (int k = 0; k < np; ++k) t[k] -= bias[k];
    }
    for (int p = 0; p < npx; ++p) { const double d = roi[p] + var[p]; if (d > 0.0) llh -= lgamma(d + 1.0); }
    bool finite = true;
    for (int k = 0; k < 5; ++k) finite = finite && isfinite(t[k]);
    if (!finite) code = 4;
    else if (singular) code = 3;
    else if (t[0] < -0.5 || t[0] > size - 0.5 || t[1] < -0.5 || t[1] > size - 0.5
             || (np == 5 && (t[4] <= sigma_lo || t[4] >= sigma_hi))) code = 2;
    for (int k = 0; k < 5; ++k) { params[r * 5 + k] = t[k]; errors[r * 5 + k] = err[k]; }
    llh_out[r] = llh; iter_out[r] = iterations; code_out[r] = code;
}
""" % {"max_size": MAX_ROI_SIZE}


class GPUUnavailable(RuntimeError):
    """No usable CUDA GPU (or no pycuda) on this machine; the message says which."""


@functools.lru_cache(maxsize=1)
def gpu_available() -> tuple[bool, str]:
    """``(True, device name)`` when a CUDA GPU can run fits here, else ``(False, reason)``."""
    try:
        import pycuda.driver as cuda
    except Exception as e:  # ImportError, or a pycuda build that cannot load libcuda
        return False, f"pycuda is not importable ({type(e).__name__}: {e}); install pyme-desk[gpu]"
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            return False, "CUDA found no GPU"
        return True, cuda.Device(0).name()
    except Exception as e:
        return False, f"CUDA cannot start ({type(e).__name__}: {e})"


class _Kernel:
    """The compiled kernel and a context on GPU 0, made on first use in this process."""

    _instance: "_Kernel | None" = None

    def __init__(self):
        import pycuda.driver as cuda
        from pycuda.compiler import SourceModule

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(0).retain_primary_context()
        self.context.push()
        try:
            self.function = SourceModule(KERNEL_SOURCE, no_extern_c=True,
                                         options=["-O3"]).get_function("fit_kernel")
        finally:
            self.context.pop()

    @classmethod
    def get(cls) -> "_Kernel":
        if cls._instance is None:
            ok, reason = gpu_available()
            if not ok:
                raise GPUUnavailable(f"GPU fitting is not available here: {reason}")
            cls._instance = cls()
        return cls._instance


def fit_rois_gpu(rois: np.ndarray, sigma: float | np.ndarray = 1.3, *, fit_sigma: bool = True,
                 variance: np.ndarray | None = None, sigma_limits: tuple[float, float] = SIGMA_LIMITS,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS, tolerance: float = DEFAULT_TOLERANCE,
                 timings: dict | None = None) -> FitOutput:
    """Like :func:`~pyme_desk.analysis.fit_cpu.fit_rois`, on the GPU; GPUUnavailable if none.

    ``timings``, when given, receives ``kernel_s`` (kernel time only) and ``total_s``.
    """
    import time

    rois = np.ascontiguousarray(rois, dtype=np.float32)
    if rois.ndim != 3 or rois.shape[1] != rois.shape[2] or not 3 <= rois.shape[1] <= MAX_ROI_SIZE:
        raise ValueError(f"rois must have shape (n, size, size) with 3 <= size <= {MAX_ROI_SIZE}, "
                         f"not {rois.shape}")
    n, size = rois.shape[0], rois.shape[1]
    per_roi = variance is not None and np.ndim(variance) == 3
    var = (np.zeros((size, size), np.float32) if variance is None
           else np.ascontiguousarray(variance, dtype=np.float32))
    if var.shape[-2:] != (size, size) or (per_roi and var.shape[0] != n):
        raise ValueError(f"variance has shape {var.shape}, ROIs are {rois.shape}")
    sigmas = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, np.float64), (n,)))
    out = FitOutput(params=np.empty((n, 5)), errors=np.empty((n, 5)), log_likelihood=np.empty(n),
                    iterations=np.empty(n, np.int32), result_code=np.empty(n, np.int32))
    if n == 0:
        return out
    kernel = _Kernel.get()
    cuda = kernel.cuda
    started = time.perf_counter()
    kernel_s = 0.0
    kernel.context.push()
    try:
        for a in range(0, n, BATCH):
            b = min(a + BATCH, n)
            m = b - a
            args = [cuda.In(rois[a:b]), cuda.In(var[a:b] if per_roi else var), np.int32(per_roi),
                    cuda.In(sigmas[a:b]), np.int32(m), np.int32(size), np.int32(5 if fit_sigma else 4),
                    np.float64(sigma_limits[0]), np.float64(sigma_limits[1]), np.int32(max_iterations),
                    np.float64(tolerance)]
            results = [np.empty((m, 5)), np.empty((m, 5)), np.empty(m), np.empty(m, np.int32),
                       np.empty(m, np.int32)]
            kernel_s += kernel.function(*args, *[cuda.Out(x) for x in results],
                                        block=(_THREADS, 1, 1), grid=((m + _THREADS - 1) // _THREADS, 1),
                                        time_kernel=True)
            out.params[a:b], out.errors[a:b], out.log_likelihood[a:b] = results[:3]
            out.iterations[a:b], out.result_code[a:b] = results[3:]
    finally:
        kernel.context.pop()
    if timings is not None:
        timings["kernel_s"] = kernel_s
        timings["total_s"] = time.perf_counter() - started
    return out
