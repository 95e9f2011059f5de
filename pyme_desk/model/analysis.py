"""Localization analyses launched from the desk, followed on a thread, feeding the live preview.

:class:`AnalysisRun` drives a :class:`~pyme_desk.analysis.launch.LocalizationLaunch` (start, then
poll about once a second, releasing frames as they arrive) and draws every batch of new
results into a :class:`~pyme_desk.model.preview.LocalizationPreview`.  :meth:`snapshot` gives
an immutable :class:`AnalysisSnapshot`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyme_desk.model.errors import describe
from pyme_desk.model.preview import LocalizationPreview, PreviewSnapshot

STARTING, RUNNING, FINISHED, CANCELLED, FAILED = "starting", "running", "finished", "cancelled", "failed"
#: Seconds between polls of the rule server and the results file.
POLL_S = 1.0
#: Seconds between listings of the series (its listing grows with every frame spooled).
LIST_S = 5.0


@dataclass(frozen=True)
class AnalysisSnapshot:
    series: str
    state: str
    rule_id: str
    frames_released: int
    tasks_completed: int
    tasks_failed: int
    error: str
    preview: PreviewSnapshot | None

    @property
    def running(self) -> bool:
        return self.state in (STARTING, RUNNING)


class AnalysisRun:
    """Analyse cluster series ``series`` with ``settings`` (``threshold``, ``fit``) on a thread."""

    def __init__(self, client, rule_server_url: str, series: str, settings: dict[str, Any]) -> None:
        self.client = client
        self.rule_server_url = rule_server_url
        self.series = series
        self.settings = dict(settings)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state, self._error, self._rule = STARTING, "", ""
        self._progress = None
        self._preview: LocalizationPreview | None = None
        self._thread = threading.Thread(target=self._run, name=f"pyme-desk-analysis-{series}", daemon=True)

    def start(self) -> "AnalysisRun":
        self._thread.start()
        return self

    def cancel(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> AnalysisSnapshot:
        with self._lock:
            p, preview = self._progress, self._preview
            return AnalysisSnapshot(
                series=self.series, state=self._state, rule_id=self._rule,
                frames_released=p.frames_released if p else 0, tasks_completed=p.tasks_completed if p else 0,
                tasks_failed=p.tasks_failed if p else 0, error=self._error,
                preview=preview.snapshot() if preview is not None else None)

    def _run(self) -> None:
        from pyme_desk.analysis.launch import LocalizationLaunch
        from pyme_desk.cluster.uris import format_cluster_uri

        launch = None
        try:
            uri = format_cluster_uri(self.client.server_filter, self.series)
            launch = LocalizationLaunch(uri, self.client, self.rule_server_url,
                                        fit=self.settings.get("fit", "auto"),
                                        threshold=self.settings.get("threshold"), list_interval=LIST_S)
            launch.start()
            md = launch.metadata
            pixel = float(md.get("voxelsize.x", 0.1)) * 1000.0
            width = float(md.get("Camera.ROIWidth", 256)) * pixel
            height = float(md.get("Camera.ROIHeight", 256)) * pixel
            with self._lock:
                self._rule, self._state = launch.rule_id, RUNNING
                self._preview = LocalizationPreview(width, height, pixel_nm=max(pixel / 10.0, 1.0))
            while not self._stop.is_set():
                progress = launch.poll()
                self._draw(launch.new_results())
                with self._lock:
                    self._progress = progress
                if progress.finished:
                    self._draw(launch.new_results())
                    with self._lock:
                        self._state = FINISHED
                    return
                self._stop.wait(POLL_S)
            launch.cancel()
            with self._lock:
                self._state = CANCELLED
        except Exception as exc:  # shown in the panel, never raised
            with self._lock:
                self._state, self._error = FAILED, describe(exc)
        finally:
            if launch is not None:
                launch.close()

    def _draw(self, rows: np.ndarray | None) -> None:
        if rows is None or len(rows) == 0 or self._preview is None:
            return
        fr, fe = rows["fitResults"], rows["fitError"]
        ok = (rows["resultCode"] == 0) & np.isfinite(fr["x0"]) & np.isfinite(fr["y0"])
        self._preview.add(fr["x0"][ok], fr["y0"][ok], fr["photons"][ok],
                          0.5 * (fe["x0"][ok] + fe["y0"][ok]))
