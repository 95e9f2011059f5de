"""The GPU fitter agrees with the CPU fitter (skipped where pycuda or a CUDA GPU is missing)."""
import numpy as np
import pytest

from pyme_desk.analysis.crlb import simulate_rois
from pyme_desk.analysis.fit_cpu import fit_rois
from pyme_desk.analysis.fit_gpu import GPUUnavailable, fit_rois_gpu, gpu_available

AVAILABLE, REASON = gpu_available()
needs_gpu = pytest.mark.skipif(not AVAILABLE, reason=f"no GPU fitting here: {REASON}")


def test_gpu_unavailable_is_reported_with_a_reason():
    if AVAILABLE:
        pytest.skip("a GPU is available here")
    assert REASON
    with pytest.raises(GPUUnavailable, match="not available"):
        fit_rois_gpu(np.zeros((1, 7, 7)))


@needs_gpu
@pytest.mark.parametrize("fit_sigma", [True, False])
def test_gpu_matches_cpu(fit_sigma):
    rng = np.random.default_rng(11)
    rois = np.concatenate([simulate_rois(2000, p, b, rng=rng)[0] for p, b in [(500, 50), (2000, 10), (5000, 50)]])
    cpu = fit_rois(rois, 1.3, fit_sigma=fit_sigma)
    gpu = fit_rois_gpu(rois, 1.3, fit_sigma=fit_sigma)
    same = (cpu.result_code == 0) & (gpu.result_code == 0)
    assert np.mean(cpu.result_code == gpu.result_code) > 0.995
    np.testing.assert_allclose(gpu.params[same, :2], cpu.params[same, :2], atol=2e-3)
    np.testing.assert_allclose(gpu.params[same, 2:4], cpu.params[same, 2:4], rtol=2e-3)
    np.testing.assert_allclose(gpu.errors[same, :2], cpu.errors[same, :2], rtol=2e-3)


@needs_gpu
def test_gpu_scmos_variance_matches_cpu():
    rng = np.random.default_rng(12)
    rois, _ = simulate_rois(1000, 1000, 10, rng=rng)
    variance = rng.uniform(1, 50, (7, 7))
    cpu = fit_rois(rois, 1.3, variance=variance)
    gpu = fit_rois_gpu(rois, 1.3, variance=variance)
    same = (cpu.result_code == 0) & (gpu.result_code == 0)
    np.testing.assert_allclose(gpu.params[same, :2], cpu.params[same, :2], atol=2e-3)
