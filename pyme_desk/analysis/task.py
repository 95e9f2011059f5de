"""The ``localization`` task type: localize one frame of a series and file the results.

A task (protocol.md §7.4/§8.4) names the series (``inputs.frames``), the frame
(``taskdef.frameIndex``, a string or an int), the analysis metadata (``taskdef.metadata``: a
URI of a ``.json`` file, an inline object, or a JSON string) and where the rows go
(``outputs.fitResults``, or ``outputs.results``: an ``__aggregate_h5r`` URL).  Rows are sent as
``.npy`` (never pickles).

A worker runs many tasks of one series in a row, so each process keeps the open series, the
decoded frames of the background window and the per-analysis :class:`Localizer` between tasks;
the background is computed once per chunk of frames (:mod:`.background`).
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pyme_desk.analysis.background import DEFAULT_BG_RANGE, BackgroundEstimator
from pyme_desk.analysis.camera import CameraMapError
from pyme_desk.analysis.fitmodules import UnsupportedFitModule
from pyme_desk.analysis.pipeline import AnalysisSettingsError, Localizer
from pyme_desk.cluster.errors import ClusterError, InvalidNameError
from pyme_desk.cluster.uris import is_cluster_uri, parse_cluster_uri
from pyme_desk.formats.pzf import PZFError
from pyme_desk.formats.series import SeriesError, open_series
from pyme_desk.node.tasks import TaskContext, TaskFailed

#: Analyses (metadata sources) and series kept open per worker process.
_KEEP = 2
#: Decoded frames kept per series (a background window plus the frames being worked on).
_FRAME_CACHE = 32


class _SeriesState:
    """An open series with its frame cache, background estimator and localizer."""

    def __init__(self, series, metadata: Mapping[str, Any], read_map):
        self.series = series
        self.metadata = dict(metadata)
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        first = series[0]
        self.localizer = Localizer(metadata, first.shape, read_map=read_map)
        bg_range = metadata.get("Analysis.BGRange")
        if bg_range is None:
            n_bg = int(metadata.get("Analysis.NumBGFrames", -DEFAULT_BG_RANGE[0]))
            bg_range = (-n_bg, 0)
        try:
            lo, hi = (int(v) for v in bg_range)
            self.background = BackgroundEstimator(self.electrons, (lo, hi),
                                                  float(metadata.get("Analysis.PCTBackground", 0) or 0))
        except (TypeError, ValueError) as e:
            raise AnalysisSettingsError(f"Analysis.BGRange / Analysis.PCTBackground: {e}") from None

    def electrons(self, index: int) -> np.ndarray:
        """Frame ``index`` in photo-electrons, decoded once and kept for a while."""
        with self._lock:
            if index in self._frames:
                self._frames.move_to_end(index)
                return self._frames[index]
        frame = self.localizer.camera.to_electrons(self.series[index])
        with self._lock:
            self._frames[index] = frame
            while len(self._frames) > _FRAME_CACHE:
                self._frames.popitem(last=False)
        return frame

    def localize(self, index: int) -> np.ndarray:
        electrons = self.electrons(index)
        n_frames = max(len(self.series), index + 1)
        background = self.background.background(index, n_frames)
        return self.localizer.localize(None, index, background, electrons=electrons)


_states: OrderedDict[tuple[str, str], _SeriesState] = OrderedDict()
_states_lock = threading.Lock()


def run(task: dict, context: TaskContext) -> None:
    """Run one localization task (the ``localization`` task type's entry point)."""
    taskdef = task.get("taskdef") if isinstance(task.get("taskdef"), Mapping) else {}
    inputs = task.get("inputs") if isinstance(task.get("inputs"), Mapping) else {}
    outputs = task.get("outputs") if isinstance(task.get("outputs"), Mapping) else {}
    series_uri = inputs.get("frames")
    target = outputs.get("fitResults") or outputs.get("results")
    if not isinstance(series_uri, str) or not series_uri:
        raise TaskFailed("localization task has no inputs.frames (the series URI)")
    if not isinstance(target, str) or not target:
        raise TaskFailed("localization task has no outputs.fitResults (where to send the results)")
    try:
        index = int(taskdef.get("frameIndex"))
    except (TypeError, ValueError):
        raise TaskFailed(f"taskdef.frameIndex must be a frame number, not {taskdef.get('frameIndex')!r}") from None
    try:
        state = _state(series_uri, taskdef.get("metadata"), context)
        start_at = int(state.metadata.get("Analysis.StartAt", 0))
        if index < start_at:
            raise TaskFailed(f"frame {index} comes before Analysis.StartAt ({start_at}); not analysed")
        rows = state.localize(index)
    except (IndexError, SeriesError, PZFError) as e:
        raise TaskFailed(str(e)) from None
    except (AnalysisSettingsError, UnsupportedFitModule, CameraMapError) as e:
        raise TaskFailed(f"analysis settings: {e}") from None
    try:
        context.cluster().file_results(target, rows)
    except (ClusterError, InvalidNameError) as e:
        raise TaskFailed(f"cannot file the results of frame {index} to {target}: {e}") from None


def _state(series_uri: str, metadata_ref: Any, context: TaskContext) -> _SeriesState:
    key = (series_uri, metadata_ref if isinstance(metadata_ref, str) else json.dumps(metadata_ref, sort_keys=True))
    with _states_lock:
        state = _states.get(key)
        if state is not None:
            _states.move_to_end(key)
            return state
    metadata = _metadata(metadata_ref, context)
    series = _open_series(series_uri, context)
    client = _client(series_uri, context)
    state = _SeriesState(series, metadata, read_map=client.get_file if client is not None else None)
    with _states_lock:
        _states[key] = state
        while len(_states) > _KEEP:
            _, old = _states.popitem(last=False)
            old.series.close()
    return state


def _client(uri: str, context: TaskContext):
    if is_cluster_uri(uri):
        return context.cluster(parse_cluster_uri(uri).server_filter)
    return None if Path(uri).exists() else context.cluster()


def _open_series(uri: str, context: TaskContext):
    try:
        client = _client(uri, context)
        return open_series(Path(uri) if client is None else uri, client=client)
    except (SeriesError, ClusterError, InvalidNameError) as e:
        raise TaskFailed(f"cannot open the series {uri}: {e}") from None


def _metadata(ref: Any, context: TaskContext) -> dict:
    """The analysis metadata from a URI of a JSON file, an inline object or a JSON string."""
    if isinstance(ref, Mapping):
        return dict(ref)
    if not isinstance(ref, str) or not ref:
        raise TaskFailed("localization task has no taskdef.metadata")
    text = ref
    if not ref.lstrip().startswith("{"):
        try:
            client = _client(ref, context)
            text = (Path(ref).read_bytes() if client is None else client.get_file(ref)).decode("utf-8")
        except (ClusterError, InvalidNameError, OSError, UnicodeDecodeError) as e:
            raise TaskFailed(f"cannot read the analysis metadata {ref}: {e}") from None
    try:
        metadata = json.loads(text)
    except ValueError:
        raise TaskFailed(f"the analysis metadata {ref[:200]} is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise TaskFailed("the analysis metadata is not a JSON object")
    return metadata
