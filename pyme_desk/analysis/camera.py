"""Camera model: raw ADU frames to photo-electrons, and the per-pixel read-noise variance.

Scalar model (any camera): ``e = (ADU - Camera.ADOffset) · Camera.ElectronsPerCount /
Camera.TrueEMGain`` with read-noise variance ``Camera.ReadNoise²`` (e⁻ rms, for the detection
threshold).  sCMOS per-pixel maps, when the metadata names them:

* ``Camera.DarkMapID``: per-pixel offset in ADU (replaces ``ADOffset``);
* ``Camera.VarianceMapID``: per-pixel read-noise variance in ADU² (as measured from dark
  frames); converted to e⁻² with ``ElectronsPerCount``;
* ``Camera.FlatfieldMapID``: per-pixel relative gain factor, applied multiplicatively.

A map ID is a ``pyme-cluster://`` URI, a cluster path (both read through the cluster client)
or a local file; ``.npy`` and ``.tif`` files are understood.  Maps are indexed ``[x, y]`` like
frames; a full-chip map is cropped to the frame using ``Camera.ROIPosX``/``ROIPosY`` (1-based,
as PYME writes them).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pyme_desk.formats.npy import load_npy


class CameraMapError(ValueError):
    """A camera map named in the metadata cannot be read or does not fit the frames."""


@dataclass(frozen=True)
class Camera:
    """Converts frames to photo-electrons; ``offset``/``gain`` are scalars or ``[x, y]`` maps.

    ``gain`` is photo-electrons per ADU count (``ElectronsPerCount / TrueEMGain``, times the
    flat-field factor); ``read_variance`` is the read-noise variance in photo-electrons² (a
    scalar or a map); ``is_scmos`` says whether the fitters should use the per-pixel model.
    """

    offset: float | np.ndarray
    gain: float | np.ndarray
    read_variance: float | np.ndarray
    is_scmos: bool = False

    def to_electrons(self, frame: np.ndarray) -> np.ndarray:
        """A float32 photo-electron image of an ADU frame (values may be slightly negative)."""
        electrons = np.asarray(frame, dtype=np.float32) - np.asarray(self.offset, dtype=np.float32)
        electrons *= np.asarray(self.gain, dtype=np.float32)
        return electrons

    def variance_map(self, shape: tuple[int, int]) -> np.ndarray:
        """The read-noise variance (e⁻²) as a full ``[x, y]`` map of ``shape``."""
        return np.broadcast_to(np.asarray(self.read_variance, dtype=np.float32), shape)


MapReader = Callable[[str], bytes]


def camera_from_metadata(metadata: Mapping[str, Any], frame_shape: tuple[int, int],
                         read_map: MapReader | None = None) -> Camera:
    """The :class:`Camera` a series' metadata describes; ``read_map(id)`` fetches map files."""
    offset = float(metadata.get("Camera.ADOffset", 0.0))
    epc = float(metadata.get("Camera.ElectronsPerCount", 1.0))
    em_gain = float(metadata.get("Camera.TrueEMGain", 1.0) or 1.0)
    if epc <= 0 or em_gain <= 0:
        raise CameraMapError(f"Camera.ElectronsPerCount ({epc}) and Camera.TrueEMGain ({em_gain}) "
                             "must be positive")
    read_noise = float(metadata.get("Camera.ReadNoise", 0.0) or 0.0)
    gain: float | np.ndarray = epc / em_gain
    read_variance: float | np.ndarray = (read_noise / em_gain) ** 2
    scmos = False
    origin = (max(int(metadata.get("Camera.ROIPosX", 1)) - 1, 0),
              max(int(metadata.get("Camera.ROIPosY", 1)) - 1, 0))
    dark_id = metadata.get("Camera.DarkMapID")
    if dark_id:
        offset = _load_map(str(dark_id), frame_shape, origin, read_map)
        scmos = True
    variance_id = metadata.get("Camera.VarianceMapID")
    if variance_id:
        read_variance = _load_map(str(variance_id), frame_shape, origin, read_map) * np.float32(epc ** 2)
        scmos = True
    flat_id = metadata.get("Camera.FlatfieldMapID")
    if flat_id:
        gain = gain * _load_map(str(flat_id), frame_shape, origin, read_map)
    return Camera(offset=offset, gain=gain, read_variance=read_variance, is_scmos=scmos)


def _load_map(map_id: str, shape: tuple[int, int], origin: tuple[int, int],
              read_map: MapReader | None) -> np.ndarray:
    """One camera map, cropped to the frame, as float32 ``[x, y]``."""
    try:
        data = read_map(map_id) if read_map is not None else Path(map_id).read_bytes()
    except Exception as e:  # any failure to fetch is reported the same way, with its reason
        raise CameraMapError(f"cannot read camera map {map_id!r}: {e}") from None
    array = _decode_map(map_id, data)
    if array.shape == tuple(shape):
        return array
    x0, y0 = origin
    if array.shape[0] >= x0 + shape[0] and array.shape[1] >= y0 + shape[1]:
        return np.ascontiguousarray(array[x0:x0 + shape[0], y0:y0 + shape[1]])
    raise CameraMapError(f"camera map {map_id!r} has shape {array.shape}; frames are {tuple(shape)} "
                         f"at ROI position {x0 + 1},{y0 + 1}")


def _decode_map(map_id: str, data: bytes) -> np.ndarray:
    name = map_id.lower()
    try:
        if name.endswith(".npy"):
            array = load_npy(data)
        elif name.endswith((".tif", ".tiff")):
            import tifffile

            array = tifffile.imread(io.BytesIO(data)).T  # tifffile is [y, x]; maps are [x, y]
        else:
            raise CameraMapError(f"camera map {map_id!r}: unknown format (use .npy or .tif)")
    except CameraMapError:
        raise
    except Exception as e:
        raise CameraMapError(f"camera map {map_id!r} is not a readable image: {e}") from None
    array = np.squeeze(np.asarray(array, dtype=np.float32))
    if array.ndim != 2:
        raise CameraMapError(f"camera map {map_id!r} is not a 2-D image (shape {array.shape})")
    return array
