"""The SMLM simulator: determinism, photophysics, PSF, noise statistics, metadata, spooling."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyme_desk.cli import build_parser
from pyme_desk.config import load_config
from pyme_desk.formats import pzf
from pyme_desk.spool import simulate_command
from pyme_desk.spool.simulator import (GROUND_TRUTH_DTYPE, CameraModel, SMLMSimulator, _add_shot_signal,
                                       _AliasTable, background_pmf)
from pyme_desk.storage.server import DataServer

FILTER = "simtest"


def one_emitter(x_nm, y_nm, photons=3000.0, size=(32, 32), **options) -> SMLMSimulator:
    """A simulator whose single fluorophore is on in every frame with fixed brightness."""
    return SMLMSimulator(*size, positions_nm=[[x_nm, y_nm]], photons=photons, photon_cv=0.0,
                         on_rate=1.0, off_rate=0.0, bleach_rate=0.0, **options)


# -- determinism ------------------------------------------------------------------------------

def test_same_seed_same_frames_and_truth():
    a, b = SMLMSimulator(64, 48, seed=7), SMLMSimulator(64, 48, seed=7)
    for fa, fb in zip(a.frames(5), b.frames(5)):
        assert fa.shape == (64, 48) and fa.dtype == np.uint16
        np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(a.ground_truth(), b.ground_truth())
    c = SMLMSimulator(64, 48, seed=8)
    assert not np.array_equal(next(SMLMSimulator(64, 48, seed=7).frames(1)), next(c.frames(1)))


def test_frames_do_not_depend_on_thread_count():
    # 512x512 is above the size at which a frame is split between threads.
    one = SMLMSimulator(512, 512, seed=3, threads=1).next_frame()
    four = SMLMSimulator(512, 512, seed=3, threads=4).next_frame()
    np.testing.assert_array_equal(one, four)


# -- photophysics -----------------------------------------------------------------------------

def test_steady_state_fraction_on():
    sim = SMLMSimulator(16, 16, n_fluorophores=20000, on_rate=0.02, off_rate=0.5, bleach_rate=0.0)
    list(sim.frames(20))
    per_frame = np.bincount(sim.ground_truth()["frame"], minlength=20) / 20000
    expected = 0.02 / 0.52
    assert abs(per_frame.mean() - expected) < 0.1 * expected
    assert per_frame.min() > 0.5 * expected and per_frame.max() < 1.5 * expected


def test_bleaching_empties_the_sample():
    sim = SMLMSimulator(16, 16, n_fluorophores=20000, on_rate=0.05, off_rate=0.3, bleach_rate=0.2)
    list(sim.frames(200))
    counts = np.bincount(sim.ground_truth()["frame"], minlength=200)
    assert counts[:10].mean() > 500
    assert counts[-10:].mean() < 0.2 * counts[:10].mean()
    assert np.all(np.diff(counts[::20]) < 0)


def test_ground_truth_rows_match_fluorophores():
    sim = SMLMSimulator(64, 64, seed=2, structure="rings")
    list(sim.frames(3))
    truth = sim.ground_truth()
    assert truth.dtype == GROUND_TRUTH_DTYPE and len(truth) > 0
    assert set(np.unique(truth["frame"])) <= {0, 1, 2}
    np.testing.assert_allclose(truth["x_nm"], sim.positions_nm[truth["fluorophore"], 0], rtol=1e-6)
    assert truth["x_nm"].min() >= 0 and truth["x_nm"].max() <= 63 * 100


@pytest.mark.parametrize("structure", ["filaments", "rings", "mixed"])
def test_structures_fill_the_field(structure):
    sim = SMLMSimulator(128, 96, structure=structure, n_fluorophores=3000, seed=1)
    pos = sim.positions_nm
    assert pos.shape == (3000, 2)
    assert pos[:, 0].min() >= 0 and pos[:, 0].max() <= 127 * 100
    assert pos[:, 1].min() >= 0 and pos[:, 1].max() <= 95 * 100


def test_rings_have_their_radius():
    sim = SMLMSimulator(256, 256, structure="rings", n_fluorophores=24, seed=5)  # one ring
    centre = sim.positions_nm.mean(axis=0)
    radius = np.hypot(*(sim.positions_nm - centre).T)
    assert 80 < np.median(radius) < 220


# -- PSF --------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_px, y_px", [(15.0, 16.0), (15.3, 16.45), (14.77, 15.52)])
def test_psf_integral_and_centroid(x_px, y_px):
    cam = CameraModel(ad_offset=100.0, electrons_per_count=0.5, read_noise_e=1.5)
    sim = SMLMSimulator(32, 32, n_fluorophores=0, background_photons_per_px=10.0, camera=cam)
    image = sim.expected_image(x_px * 100, y_px * 100, 5000.0) - 100.0 - 10.0 / 0.5
    assert image.sum() == pytest.approx(5000.0 / 0.5, rel=1e-4)
    xs, ys = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    assert abs((image * xs).sum() / image.sum() - x_px) < 0.05
    assert abs((image * ys).sum() / image.sum() - y_px) < 0.05
    assert np.unravel_index(image.argmax(), image.shape) == (round(x_px), round(y_px))


def test_psf_is_integrated_over_each_pixel():
    sigma_px = 1.3
    sim = SMLMSimulator(16, 16, n_fluorophores=0, background_photons_per_px=0.0, psf_sigma_nm=130.0,
                        camera=CameraModel(ad_offset=0.0, electrons_per_count=1.0))
    x, y = 8.2, 7.6
    image = sim.expected_image(x * 100, y * 100, 1.0)
    # Reference: average of the Gaussian density on a fine grid inside each pixel.
    sub = (np.arange(40) + 0.5) / 40 - 0.5
    for px, py in [(8, 8), (8, 7), (9, 7), (6, 9)]:
        gx, gy = np.meshgrid(px + sub, py + sub, indexing="ij")
        density = np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma_px ** 2)) / (2 * np.pi * sigma_px ** 2)
        assert image[px, py] == pytest.approx(density.mean(), rel=1e-3)
    point = np.exp(-((8 - x) ** 2 + (8 - y) ** 2) / (2 * sigma_px ** 2)) / (2 * np.pi * sigma_px ** 2)
    assert abs(image[8, 8] - point) > 1e-3 * point  # not point-sampled


# -- noise ------------------------------------------------------------------------------------

@pytest.mark.parametrize("maps", [False, True])
def test_flat_background_statistics(maps):
    g, off, rn, bg = 0.5, 100.0, 1.5, 20.0
    shape = (128, 128)
    cam = CameraModel(off, g, rn) if not maps else CameraModel(
        off, g, rn, offset_map=np.full(shape, off), variance_map=np.full(shape, rn ** 2),
        gain_map=np.full(shape, g))
    sim = SMLMSimulator(*shape, n_fluorophores=0, background_photons_per_px=bg, camera=cam, seed=4)
    data = np.stack(list(sim.frames(4))).astype(float)
    expected_var = (bg + rn ** 2) / g ** 2 + 1 / 12  # shot + read noise in ADU, plus rounding
    assert data.mean() == pytest.approx(off + bg / g, abs=4 * math.sqrt(expected_var / data.size))
    assert data.var() == pytest.approx(expected_var, rel=0.03)


def test_per_pixel_maps_apply_per_pixel():
    shape = (64, 64)
    offset = np.full(shape, 100.0)
    offset[:32] = 300.0
    sim = SMLMSimulator(*shape, n_fluorophores=0, background_photons_per_px=0.0,
                        camera=CameraModel(offset_map=offset, variance_map=np.zeros(shape)))
    frame = sim.next_frame()
    assert np.all(frame[:32] == 300) and np.all(frame[32:] == 100)


@pytest.mark.parametrize("gain", [0.5, 0.46])  # whole ADU per electron (fast path) and not
def test_emitter_mean_and_variance_match_the_model(gain):
    cam = CameraModel(ad_offset=100.0, electrons_per_count=gain, read_noise_e=1.5)
    sim = one_emitter(1610.0, 1540.0, photons=3000.0, camera=cam, background_photons_per_px=15.0, seed=9)
    data = np.stack(list(sim.frames(400))).astype(float)
    expected = sim.expected_image(1610.0, 1540.0, 3000.0)
    variance = (expected - 100.0) * gain / gain ** 2 + (1.5 / gain) ** 2 + 1 / 12
    z = (data.mean(axis=0) - expected) / np.sqrt(variance / len(data))
    assert np.abs(z).max() < 5 and abs(z.mean()) < 0.3
    peak = np.unravel_index(expected.argmax(), expected.shape)
    assert data[:, peak[0], peak[1]].var() == pytest.approx(variance[peak], rel=0.2)
    truth = sim.ground_truth()
    assert len(truth) == 400 and np.all(truth["photons"] == 3000.0)


@pytest.mark.parametrize("lam", [0.05, 3.0, 11.9, 12.1, 40.0, 700.0])
def test_poisson_sampler(lam):
    n = 200_000
    out = np.zeros(n, np.uint16)
    _add_shot_signal(out, np.arange(n), np.full(n, lam), 1, np.uint64(1234))
    counts = out.astype(float)
    assert counts.mean() == pytest.approx(lam, rel=0.02, abs=0.003)
    assert counts.var() == pytest.approx(lam, rel=0.03, abs=0.003)
    k = np.arange(max(0, int(lam - 3 * math.sqrt(lam))), int(lam + 3 * math.sqrt(lam)) + 1)
    pmf = np.exp(k * math.log(lam) - lam - np.array([math.lgamma(v + 1) for v in k]))
    observed = np.bincount(out, minlength=k.max() + 1)[k] / n
    assert np.abs(observed - pmf).max() < 5 * math.sqrt(pmf.max() / n) + 1e-4


def test_background_alias_table_matches_its_distribution():
    values, probs = background_pmf(20.0, CameraModel())
    assert probs.sum() == pytest.approx(1.0)
    assert (values * probs).sum() == pytest.approx(100 + 20 / 0.5, abs=0.01)
    table = _AliasTable(values, probs)
    out = np.empty(1_000_000, np.uint16)
    table.fill(out, 0, out.size, 99)
    observed = np.bincount(out, minlength=values.max() + 1)[values] / out.size
    assert np.abs(observed - probs).sum() < 0.01


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="on_rate"):
        SMLMSimulator(8, 8, on_rate=1.5)
    with pytest.raises(ValueError, match="structure"):
        SMLMSimulator(8, 8, structure="blobs")
    with pytest.raises(ValueError, match="offset_map"):
        SMLMSimulator(8, 8, camera=CameraModel(offset_map=np.zeros((4, 4))))


# -- metadata ---------------------------------------------------------------------------------

def test_metadata_keys_and_units():
    sim = SMLMSimulator(200, 100, seed=11, pixel_size_nm=65.0, camera=CameraModel(110.0, 0.47, 1.8))
    md = sim.metadata()
    assert md["Camera.ADOffset"] == 110.0 and md["Camera.ElectronsPerCount"] == 0.47
    assert md["Camera.ReadNoise"] == 1.8
    assert md["Camera.TrueEMGain"] == 1 and md["Camera.NoiseFactor"] == 1
    assert (md["Camera.ROIWidth"], md["Camera.ROIHeight"]) == (200, 100)
    assert md["voxelsize.x"] == pytest.approx(0.065) and md["voxelsize.y"] == pytest.approx(0.065)
    assert md["Simulation.Seed"] == 11 and md["Simulation.NumFluorophores"] == sim.n_fluorophores
    assert md["StartTime"] > 1.6e9
    json.dumps(md)  # plain JSON values only


# -- spooling ---------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    srv = DataServer(tmp_path / "root", server_filter=FILTER).start()
    yield srv
    srv.stop()


def simulate_args(*extra):
    return build_parser("simulate").parse_args(["simulate", *extra])


def test_simulated_series_reads_back_identical(server, capsys):
    series = "user/sim/run_01"
    args = simulate_args("--series", series, "--frames", "12", "--size", "40", "24", "--seed", "5",
                         "--server", server.url, "--filter", FILTER, "--fps", "0", "--no-progress")
    assert simulate_command.run(args, load_config()) == 0
    assert "12 frames" in capsys.readouterr().out
    folder = Path(server.root.path) / series
    reference = SMLMSimulator(40, 24, seed=5)
    for i, expected in enumerate(reference.frames(12)):
        np.testing.assert_array_equal(pzf.decode((folder / f"frame{i:05d}.pzf").read_bytes()), expected)
    truth = np.load(folder / "ground_truth.npy")
    np.testing.assert_array_equal(truth, reference.ground_truth())
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["Camera.ROIWidth"] == 40 and metadata["Simulation.Seed"] == 5
    assert (folder / "events.json").is_file()
    # events.json, the completion marker, came after the ground truth
    assert (folder / "events.json").stat().st_mtime_ns >= (folder / "ground_truth.npy").stat().st_mtime_ns


def _cli(*args):
    env = {**os.environ, "PYME_DESK_CONFIG": os.devnull}
    return subprocess.run([sys.executable, "-m", "pyme_desk", "simulate", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_cli_spools_a_complete_series(server):
    r = _cli("--series", "s", "--frames", "20", "--size", "64", "64", "--seed", "1",
             "--server", server.url, "--filter", FILTER, "--fps", "0")
    assert r.returncode == 0, r.stderr
    folder = Path(server.root.path) / "s"
    assert len(list(folder.glob("frame*.pzf"))) == 20
    assert (folder / "ground_truth.npy").is_file() and (folder / "events.json").is_file()
    assert pzf.decode((folder / "frame00019.pzf").read_bytes()).shape == (64, 64)


def test_cli_unreachable_server_is_one_line_exit_2(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _cli("--series", "s", "--frames", "2", "--server", f"http://127.0.0.1:{port}/", "--fps", "0")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr
