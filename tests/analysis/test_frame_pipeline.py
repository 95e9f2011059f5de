"""Camera model, background, detection and whole-frame localization on simulator data."""
import numpy as np
import pytest

from pyme_desk.analysis.background import BackgroundEstimator, window_statistic
from pyme_desk.analysis.camera import CameraMapError, camera_from_metadata
from pyme_desk.analysis.detection import (DetectionSettings, band_pass, detect, dog_noise_gain,
                                          extract_rois, roi_origins)
from pyme_desk.analysis.fitmodules import (CPU_MODULE, GPU_MODULE, UnsupportedFitModule, fit_backend,
                                           module_for_backend)
from pyme_desk.analysis.pipeline import AnalysisSettingsError, Localizer
from pyme_desk.analysis.results import FIT_RESULTS_DTYPE
from pyme_desk.spool.simulator import CameraModel, SMLMSimulator

ANALYSIS = {"Analysis.FitModule": CPU_MODULE, "Analysis.DetectionThreshold": 5.0}


# -- camera -------------------------------------------------------------------------------------

def test_scalar_camera_converts_adu_to_photoelectrons():
    cam = camera_from_metadata({"Camera.ADOffset": 100, "Camera.ElectronsPerCount": 2.0,
                                "Camera.TrueEMGain": 4.0, "Camera.ReadNoise": 8.0}, (4, 4))
    e = cam.to_electrons(np.full((4, 4), 140, np.uint16))
    assert e.dtype == np.float32 and np.all(e == 20.0)
    assert cam.read_variance == pytest.approx(4.0) and not cam.is_scmos


def test_scmos_maps_are_read_cropped_and_applied(tmp_path):
    dark = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.save(tmp_path / "dark.npy", dark)
    np.save(tmp_path / "var.npy", np.full((8, 8), 4.0, np.float32))
    np.save(tmp_path / "flat.npy", np.full((8, 8), 2.0, np.float32))
    md = {"Camera.ElectronsPerCount": 0.5, "Camera.ROIPosX": 3, "Camera.ROIPosY": 5,
          "Camera.DarkMapID": str(tmp_path / "dark.npy"), "Camera.VarianceMapID": str(tmp_path / "var.npy"),
          "Camera.FlatfieldMapID": str(tmp_path / "flat.npy")}
    cam = camera_from_metadata(md, (4, 2))
    assert cam.is_scmos
    frame = dark[2:6, 4:6] + 10
    assert np.allclose(cam.to_electrons(frame), 10 * 0.5 * 2.0)
    assert np.allclose(cam.variance_map((4, 2)), 4.0 * 0.25)
    fetched = []
    cam = camera_from_metadata({"Camera.DarkMapID": "pyme-cluster://c/maps/dark.npy"}, (8, 8),
                               read_map=lambda uri: fetched.append(uri) or (tmp_path / "dark.npy").read_bytes())
    assert fetched == ["pyme-cluster://c/maps/dark.npy"] and np.array_equal(cam.offset, dark)


def test_unreadable_or_misfitting_maps_are_clear_errors(tmp_path):
    with pytest.raises(CameraMapError, match="cannot read camera map"):
        camera_from_metadata({"Camera.DarkMapID": str(tmp_path / "missing.npy")}, (4, 4))
    np.save(tmp_path / "small.npy", np.zeros((2, 2)))
    with pytest.raises(CameraMapError, match="shape"):
        camera_from_metadata({"Camera.DarkMapID": str(tmp_path / "small.npy")}, (4, 4))


# -- background ---------------------------------------------------------------------------------

def test_window_statistic_is_median_or_percentile():
    rng = np.random.default_rng(0)
    stack = rng.poisson(20, (9, 16, 16)).astype(np.float32)
    assert np.array_equal(window_statistic(stack), np.median(stack, axis=0))
    assert np.array_equal(window_statistic(stack[:8]), np.median(stack[:8], axis=0))
    q = window_statistic(stack, 0.25)
    assert np.array_equal(q, np.sort(stack, axis=0)[2])


def test_background_is_computed_once_per_chunk_from_earlier_frames():
    calls = []
    frames = [np.full((4, 4), float(i), np.float32) for i in range(40)]
    est = BackgroundEstimator(lambda i: calls.append(i) or frames[i], (-10, 0), chunk=10)
    assert est.background(5, 40) is None  # nothing before the first chunk
    b = est.background(23, 40)
    assert list(est.window(23, 40)) == list(range(10, 20))
    assert np.all(b == 14.5)
    n_calls = len(calls)
    for i in range(20, 30):
        assert est.background(i, 40) is b  # same chunk: no new work
    assert len(calls) == n_calls
    with pytest.raises(ValueError):
        BackgroundEstimator(lambda i: frames[i], (0, 0))


# -- detection ----------------------------------------------------------------------------------

def test_band_pass_noise_gain_matches_white_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 3.0, (256, 256)).astype(np.float32)
    band, low = band_pass(noise, 1.0, 3.0)
    assert band.std() == pytest.approx(3.0 * dog_noise_gain(1.0, 3.0), rel=0.03)
    assert low.std() == pytest.approx(3.0 * dog_noise_gain(1.0, 0.0), rel=0.03)


def _spot_frame(positions, photons=2000.0, bg=20.0, shape=(64, 64), seed=0):
    sim = SMLMSimulator(*shape, seed=seed, positions_nm=np.asarray(positions, float) * 100.0,
                        photons=photons, photon_cv=0.0, background_photons_per_px=bg, on_rate=1.0,
                        off_rate=0.0, bleach_rate=0.0, camera=CameraModel(ad_offset=0, electrons_per_count=1,
                                                                         read_noise_e=0))
    return sim.next_frame().astype(np.float32)


def test_detect_finds_spots_debounces_neighbours_and_ignores_noise():
    frame = _spot_frame([(10, 12), (40, 40), (45, 40), (5, 60)])
    settings = DetectionSettings(threshold=5.0, debounce_radius=5)
    found = {tuple(p) for p in detect(frame, 20.0, settings)}
    assert (10, 12) in found and (5, 60) in found
    assert len(found) == 3  # the pair closer than the debounce radius gives one detection
    assert len(found & {(40, 40), (45, 40)}) == 1
    rng = np.random.default_rng(2)
    assert len(detect(rng.poisson(20, (128, 128)).astype(np.float32), 20.0, settings)) == 0
    loose = DetectionSettings(threshold=5.0, debounce_radius=2)
    assert len(detect(frame, 20.0, loose)) == 4


def test_rois_stay_inside_the_frame():
    origins = roi_origins(np.array([[0, 0], [63, 30], [10, 10]]), (64, 64), 7)
    assert origins.tolist() == [[0, 0], [57, 27], [7, 7]]
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    rois = extract_rois(image, origins, 7)
    assert rois.shape == (3, 7, 7) and rois[2, 0, 0] == image[7, 7]
    with pytest.raises(ValueError, match="smaller"):
        roi_origins(np.zeros((1, 2)), (5, 64), 7)


# -- fit modules --------------------------------------------------------------------------------

def test_fit_module_names():
    assert fit_backend({"Analysis.FitModule": CPU_MODULE}) == "cpu"
    assert fit_backend({"Analysis.FitModule": GPU_MODULE}) == "gpu"
    assert fit_backend({"Analysis.FitModule": CPU_MODULE, "Analysis.FitBackend": "auto"}) in ("cpu", "gpu")
    with pytest.raises(UnsupportedFitModule, match="AstigGaussFitFR.*not supported.*LatGaussFitFR"):
        fit_backend({"Analysis.FitModule": "AstigGaussFitFR"})
    with pytest.raises(UnsupportedFitModule, match="no Analysis.FitModule"):
        fit_backend({})
    assert module_for_backend("gpu") == (GPU_MODULE, "gpu")
    assert module_for_backend("auto") == (CPU_MODULE, "auto")


def test_missing_threshold_is_a_settings_error():
    with pytest.raises(AnalysisSettingsError, match="DetectionThreshold"):
        Localizer({"Analysis.FitModule": CPU_MODULE}, (64, 64))


# -- whole frames -------------------------------------------------------------------------------

def match(found, truth, tolerance_nm=100.0):
    """Greedy nearest-first matching within the tolerance; returns (tp pairs, fp, fn)."""
    if len(found) == 0 or len(truth) == 0:
        return [], len(found), len(truth)
    d = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    pairs, used_f, used_t = [], set(), set()
    for k in np.argsort(d, axis=None):
        i, j = np.unravel_index(k, d.shape)
        if d[i, j] > tolerance_nm:
            break
        if i not in used_f and j not in used_t:
            used_f.add(i), used_t.add(j), pairs.append((i, j))
    return pairs, len(found) - len(pairs), len(truth) - len(pairs)


def test_whole_frame_jaccard_and_rmse_on_simulated_series():
    rng = np.random.default_rng(5)
    gx, gy = np.meshgrid(np.arange(800.0, 12000, 1500), np.arange(800.0, 12000, 1500))
    positions = np.c_[gx.ravel(), gy.ravel()] + rng.uniform(-300, 300, (gx.size, 2))
    sim = SMLMSimulator(128, 128, seed=3, positions_nm=positions, photons=2000,
                        background_photons_per_px=20, on_rate=0.1, off_rate=0.5, bleach_rate=0.0)
    frames = list(sim.frames(60))
    truth = sim.ground_truth()
    loc = Localizer({**sim.metadata(), **ANALYSIS}, frames[0].shape)
    electrons = [loc.camera.to_electrons(f) for f in frames]
    background = BackgroundEstimator(lambda i: electrons[i])
    tp = fp = fn = 0
    errors, bounds = [], []
    for i in range(10, len(frames)):
        rows = loc.localize(frames[i], i, background.background(i, len(frames)), electrons=electrons[i])
        assert rows.dtype == FIT_RESULTS_DTYPE and np.all(rows["tIndex"] == i)
        rows = rows[rows["resultCode"] == 0]
        found = np.c_[rows["fitResults"]["x0"], rows["fitResults"]["y0"]]
        t = truth[truth["frame"] == i]
        pairs, f_p, f_n = match(found, np.c_[t["x_nm"], t["y_nm"]])
        tp, fp, fn = tp + len(pairs), fp + f_p, fn + f_n
        for a, b in pairs:
            errors.append(found[a] - (t["x_nm"][b], t["y_nm"][b]))
            bounds.append((rows["fitError"]["x0"][a], rows["fitError"]["y0"][a]))
    assert tp > 300
    jaccard = tp / (tp + fp + fn)
    assert jaccard >= 0.9, (tp, fp, fn)
    rmse = np.sqrt(np.mean(np.square(errors), axis=0))
    mean_crlb = np.sqrt(np.mean(np.square(bounds), axis=0))
    assert np.all(rmse <= 1.2 * mean_crlb), (rmse, mean_crlb)


def test_results_rows_are_in_nm():
    frame = _spot_frame([(20, 30)], photons=5000)
    md = {**ANALYSIS, "voxelsize.x": 0.1, "voxelsize.y": 0.1, "Analysis.FitSigma": False}
    rows = Localizer(md, frame.shape).localize(frame, 7, np.full(frame.shape, 20.0, np.float32))
    assert len(rows) == 1 and rows["tIndex"][0] == 7
    fr = rows["fitResults"][0]
    assert fr["x0"] == pytest.approx(2000, abs=5) and fr["y0"] == pytest.approx(3000, abs=5)
    assert fr["sigma"] == pytest.approx(130.0) and fr["photons"] == pytest.approx(5000, rel=0.05)
    assert fr["A"] == pytest.approx(fr["photons"] / (2 * np.pi * 1.3 ** 2), rel=1e-4)
    assert 0 < rows["fitError"]["x0"][0] < 5
