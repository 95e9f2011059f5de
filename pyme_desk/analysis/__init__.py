"""Localization analysis: from raw frames to molecule positions, and images of them.

Modules, one job each:

* :mod:`.camera` — ADU to photo-electrons (scalar or sCMOS maps);
* :mod:`.background` — sliding-window background, once per chunk of frames;
* :mod:`.detection` — band-pass, noise-scaled threshold, local maxima, ROIs;
* :mod:`.fit_cpu` / :mod:`.fit_gpu` — integrated-Gaussian Poisson MLE over many ROIs;
* :mod:`.crlb` — the spot model and its Cramér-Rao bound;
* :mod:`.fitmodules` — PYME ``Analysis.FitModule`` names to fitters;
* :mod:`.pipeline` — :class:`Localizer`, one frame in, FitResults rows out;
* :mod:`.results` — the FitResults row layout;
* :mod:`.task` — the ``localization`` task type run by workers;
* :mod:`.launch` / :mod:`.command` — launching an analysis (``pyme-desk analyse``);
* :mod:`.render` — incremental super-resolution rendering.

The names below are imported on first use, so ``import pyme_desk.analysis`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Camera": "camera", "camera_from_metadata": "camera",
    "BackgroundEstimator": "background", "window_statistic": "background",
    "DetectionSettings": "detection", "detect": "detection",
    "fit_rois": "fit_cpu", "FitOutput": "fit_cpu",
    "fit_rois_gpu": "fit_gpu", "gpu_available": "fit_gpu",
    "crlb": "crlb", "mean_crlb": "crlb", "expected_roi": "crlb",
    "Localizer": "pipeline",
    "FIT_RESULTS_DTYPE": "results",
    "LocalizationLaunch": "launch",
    "Renderer": "render", "RenderFilter": "render",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
