"""The numerical CRLB against the reference table of docs/localization.md."""
import numpy as np
import pytest

from pyme_desk.analysis.crlb import crlb, expected_roi, mean_crlb

# photons, background, CRLB x (px), CRLB photons, CRLB background (sigma 1.3 px, 7x7, sigma fitted)
TABLE = [
    (500, 10, 0.0913, 58.9, 1.11),
    (500, 50, 0.1475, 109.5, 2.25),
    (2000, 10, 0.0365, 80.7, 1.31),
    (2000, 50, 0.0481, 127.0, 2.43),
    (5000, 10, 0.0214, 108.0, 1.54),
    (5000, 50, 0.0253, 151.2, 2.66),
]


@pytest.mark.parametrize("photons,background,x,n,bg", TABLE)
def test_mean_crlb_matches_reference_table(photons, background, x, n, bg):
    bounds = mean_crlb(photons, background, sigma=1.3, size=7)
    assert bounds[0] == pytest.approx(x, rel=0.005)
    assert bounds[1] == pytest.approx(x, rel=0.005)
    assert bounds[2] == pytest.approx(n, rel=0.005)
    assert bounds[3] == pytest.approx(bg, rel=0.01)


def test_fixed_sigma_barely_changes_position_bound_but_tightens_photons():
    free = mean_crlb(2000, 10, fit_sigma=True)
    fixed = mean_crlb(2000, 10, fit_sigma=False)
    assert fixed[0] == pytest.approx(free[0], rel=0.01)
    assert fixed[2] < 0.8 * free[2]


def test_read_noise_variance_loosens_the_bound():
    plain = crlb(3.0, 3.0, 500, 10, 1.3)
    noisy = crlb(3.0, 3.0, 500, 10, 1.3, variance=np.full((7, 7), 20.0))
    assert noisy[0] > 1.2 * plain[0]


def test_model_holds_nearly_all_photons_of_a_centred_spot():
    roi = expected_roi(3.0, 3.0, 1000.0, 0.0, 1.3)
    assert 0.95 * 1000 < roi.sum() < 1000
    assert np.unravel_index(roi.argmax(), roi.shape) == (3, 3)
