"""One frame in, localizations out: camera model, detection, ROI fits, result rows.

:class:`Localizer` is built once per analysis from its metadata (protocol.md §8.4 keys) and
then called per frame with that frame's background estimate (:mod:`.background`).  Fits use
the raw photo-electron ROIs with a fitted flat background, the exact Poisson model; the
background estimate only serves detection.

Metadata keys read (defaults in brackets): ``Analysis.FitModule`` (required, see
:mod:`.fitmodules`), ``Analysis.DetectionThreshold`` (required), ``Analysis.SNRThreshold``
[True], ``Analysis.DetectionRadiusLowpass`` [1.0], ``Analysis.DetectionRadiusHighpass`` [3.0],
``Analysis.DebounceRadius`` [5], ``Analysis.ROISize`` (half-width) [3, i.e. 7×7 ROIs],
``voxelsize.x``/``voxelsize.y`` (µm) [0.1], the ``Camera.*`` keys of :mod:`.camera`, and two
pyme-desk keys: ``Analysis.PSFSigma`` (nm) [130], the start (or fixed) PSF sigma, and
``Analysis.FitSigma`` [True], whether sigma is fitted.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from pyme_desk.analysis.camera import Camera, MapReader, camera_from_metadata
from pyme_desk.analysis.detection import DetectionSettings, detect, extract_rois, roi_origins
from pyme_desk.analysis.fit_cpu import FitOutput, fit_rois
from pyme_desk.analysis.fitmodules import fit_backend
from pyme_desk.analysis.results import fit_results

DEFAULT_PSF_SIGMA_NM = 130.0
DEFAULT_PIXEL_SIZE_UM = 0.1


class AnalysisSettingsError(ValueError):
    """The analysis metadata is missing a required key or holds an unusable value."""


def _number(metadata: Mapping[str, Any], key: str, default: Any = None, kind: type = float) -> Any:
    value = metadata.get(key, default)
    if value is None:
        raise AnalysisSettingsError(f"the analysis metadata needs {key}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise AnalysisSettingsError(f"{key} must be a number, not {value!r}") from None


def detection_settings(metadata: Mapping[str, Any]) -> DetectionSettings:
    """The detection parameters a metadata dict asks for."""
    settings = DetectionSettings(
        threshold=_number(metadata, "Analysis.DetectionThreshold"),
        snr_threshold=bool(metadata.get("Analysis.SNRThreshold", True)),
        lowpass=_number(metadata, "Analysis.DetectionRadiusLowpass", 1.0),
        highpass=_number(metadata, "Analysis.DetectionRadiusHighpass", 3.0),
        debounce_radius=_number(metadata, "Analysis.DebounceRadius", 5, int),
        roi_half_size=_number(metadata, "Analysis.ROISize", 3, int))
    if settings.roi_half_size < 1 or settings.debounce_radius < 0 or settings.lowpass < 0:
        raise AnalysisSettingsError("Analysis.ROISize must be >= 1, DebounceRadius and "
                                    "DetectionRadiusLowpass >= 0")
    return settings


class Localizer:
    """Localizes spots in frames of one series; see the module docstring.

    ``frame_shape`` is ``(width, height)`` of the series' frames; ``read_map`` fetches sCMOS
    camera maps named in the metadata; ``backend`` overrides the metadata's choice of fitter.
    """

    def __init__(self, metadata: Mapping[str, Any], frame_shape: tuple[int, int],
                 read_map: MapReader | None = None, backend: str | None = None):
        self.metadata = dict(metadata)
        self.detection = detection_settings(metadata)
        self.camera: Camera = camera_from_metadata(metadata, frame_shape, read_map)
        self.pixel_size_nm = (_number(metadata, "voxelsize.x", DEFAULT_PIXEL_SIZE_UM) * 1000.0,
                              _number(metadata, "voxelsize.y", DEFAULT_PIXEL_SIZE_UM) * 1000.0)
        if min(self.pixel_size_nm) <= 0:
            raise AnalysisSettingsError("voxelsize.x and voxelsize.y must be positive")
        psf_nm = _number(metadata, "Analysis.PSFSigma", DEFAULT_PSF_SIGMA_NM)
        self.sigma_px = psf_nm / float(np.sqrt(self.pixel_size_nm[0] * self.pixel_size_nm[1]))
        self.fit_sigma = bool(metadata.get("Analysis.FitSigma", True))
        self.backend = backend or fit_backend(metadata)
        self._variance = (self.camera.variance_map(frame_shape) if self.camera.is_scmos else None)
        self._fit = self._fitter()

    def _fitter(self) -> Callable[..., FitOutput]:
        if self.backend == "gpu":
            from pyme_desk.analysis.fit_gpu import fit_rois_gpu

            return fit_rois_gpu
        return fit_rois

    def localize(self, frame: np.ndarray, t_index: int, background: np.ndarray | None = None,
                 electrons: np.ndarray | None = None) -> np.ndarray:
        """FitResults rows for one raw (ADU) frame; ``background`` in photo-electrons (None:
        the frame's median).  Pass ``electrons`` when the converted frame is already at hand."""
        if electrons is None:
            electrons = self.camera.to_electrons(frame)
        if background is None:
            background = float(np.median(electrons))
        size = self.detection.roi_size
        positions = detect(electrons, background, self.detection, self.camera.read_variance)
        origins = roi_origins(positions, electrons.shape, size)
        rois = extract_rois(electrons, origins, size)
        variance = extract_rois(self._variance, origins, size) if self._variance is not None else None
        out = self._fit(rois, self.sigma_px, fit_sigma=self.fit_sigma, variance=variance)
        return fit_results(t_index, out.params, out.errors, origins, self.pixel_size_nm,
                           out.log_likelihood, out.iterations, out.result_code)
