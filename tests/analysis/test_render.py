"""Incremental rendering of localizations."""
import numpy as np
import pytest

from pyme_desk.analysis.render import Renderer, RenderFilter
from pyme_desk.analysis.results import FIT_RESULTS_DTYPE


def _rows(x, y, photons=1000.0, precision=10.0, code=0):
    rows = np.zeros(len(x), FIT_RESULTS_DTYPE)
    rows["fitResults"]["x0"], rows["fitResults"]["y0"] = x, y
    rows["fitResults"]["photons"] = photons
    rows["fitError"]["x0"] = rows["fitError"]["y0"] = precision
    rows["resultCode"] = code
    return rows


def test_histogram_counts_each_localization_in_its_pixel():
    r = Renderer((0, 100, 0, 50), pixel_size_nm=10)
    assert r.shape == (10, 5)
    assert r.add(_rows([5, 5, 95, 200], [5, 5, 45, 5])) == 4
    img = r.image()
    assert img[0, 0] == 2 and img[9, 4] == 1 and img.sum() == 3  # the one outside is not drawn


def test_gaussian_blobs_keep_unit_mass_and_incremental_equals_batch():
    rng = np.random.default_rng(0)
    rows = _rows(rng.uniform(200, 800, 300), rng.uniform(200, 800, 300), precision=rng.uniform(5, 30, 300))
    whole = Renderer((0, 1000, 0, 1000), 5, mode="gaussian")
    whole.add(rows)
    parts = Renderer((0, 1000, 0, 1000), 5, mode="gaussian")
    for chunk in np.array_split(rows, 7):
        parts.add(chunk)
    assert whole.image().sum() == pytest.approx(300, rel=1e-3)
    np.testing.assert_allclose(parts.image(), whole.image(), atol=1e-5)
    assert parts.count == 300


def test_filters_drop_dim_imprecise_and_failed_fits():
    rows = np.concatenate([_rows([10], [10]), _rows([20], [20], photons=50), _rows([30], [30], precision=80),
                           _rows([40], [40], code=2)])
    r = Renderer((0, 100, 0, 100), 10, filter=RenderFilter(min_photons=100, max_precision_nm=50))
    assert r.add(rows) == 1
    r.clear()
    assert r.image().sum() == 0 and r.count == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        Renderer((0, 1, 0, 1), mode="points")
    with pytest.raises(ValueError, match="extent"):
        Renderer((0, 0, 0, 1))
