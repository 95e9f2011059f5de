"""Acquisitions started from the desk: the demo mode's simulated camera spooled into the cluster.

:class:`SimulatedAcquisition` runs an :class:`~pyme_desk.spool.simulator.SMLMSimulator` and a
:class:`~pyme_desk.spool.spooler.Spooler` on a thread of its own, paced to a frame rate, and
publishes :class:`AcquisitionSnapshot` values (latest frame, frames/s, MB/s, backlog).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyme_desk.cluster import ClusterClient
from pyme_desk.model.errors import describe

STARTING, SPOOLING, FINISHING, COMPLETE, STOPPED, FAILED = (
    "starting", "spooling", "finishing", "complete", "stopped", "failed")


@dataclass(frozen=True)
class AcquisitionSnapshot:
    """One acquisition at one moment."""

    series: str
    uri: str
    state: str
    frames_total: int
    frames_queued: int = 0
    frames_stored: int = 0
    frames_per_s: float = 0.0
    mb_per_s: float = 0.0
    backlog: int = 0  # frames accepted but not yet stored
    error: str = ""
    latest_frame: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def running(self) -> bool:
        return self.state in (STARTING, SPOOLING, FINISHING)


class SimulatedAcquisition:
    """Spools ``n_frames`` simulated frames of ``width`` x ``height`` pixels into the cluster."""

    def __init__(self, client: ClusterClient, series: str, *, n_frames: int = 2000,
                 frame_rate: float = 100.0, width: int = 128, height: int = 128, seed: int = 0,
                 simulator_options: dict[str, Any] | None = None) -> None:
        if n_frames < 1 or frame_rate <= 0:
            raise ValueError("a simulated acquisition needs at least one frame and a positive frame rate")
        self.client = client
        self.series = series
        self.n_frames = n_frames
        self.frame_rate = frame_rate
        self._sim_args = dict(width=width, height=height, seed=seed, **(simulator_options or {}))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = STARTING
        self._error = ""
        self._uri = ""
        self._latest: np.ndarray | None = None
        self._spooler = None
        self._generated = 0
        self._started_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"pyme-desk-simulate-{series}", daemon=True)

    def start(self) -> "SimulatedAcquisition":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop generating frames; what was spooled is finished off as a complete series."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> AcquisitionSnapshot:
        with self._lock:
            spooler, state, error, latest = self._spooler, self._state, self._error, self._latest
            generated, started = self._generated, self._started_at
        snap = dict(series=self.series, uri=self._uri, state=state, frames_total=self.n_frames,
                    error=error, latest_frame=latest)
        if spooler is not None:
            stats = spooler.stats()
            elapsed = max(time.monotonic() - started, 1e-9) if started else 0.0
            snap.update(frames_queued=stats.frames_queued, frames_stored=stats.frames_sent,
                        mb_per_s=stats.mb_per_s, backlog=stats.queue_depth,
                        frames_per_s=generated / elapsed if elapsed else 0.0)
        return AcquisitionSnapshot(**snap)

    def _set(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, f"_{key}", value)

    def _run(self) -> None:
        from pyme_desk.spool.simulator import SMLMSimulator
        from pyme_desk.spool.spooler import Spooler

        spooler = None
        try:
            simulator = SMLMSimulator(record_ground_truth=False, cycle_time_s=1.0 / self.frame_rate,
                                      **self._sim_args)
            spooler = Spooler(self.series, simulator.metadata(), client=self.client)
            spooler.start()
            self._set(spooler=spooler, state=SPOOLING, started_at=time.monotonic())
            self._uri = spooler.uri
            period = 1.0 / self.frame_rate
            next_at = time.monotonic()
            for i in range(self.n_frames):
                if self._stop.is_set():
                    break
                frame = simulator.next_frame()
                spooler.put_frame(frame)
                self._set(latest=frame, generated=i + 1)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            self._set(state=FINISHING)
            spooler.finish()
            self._set(state=STOPPED if self._stop.is_set() else COMPLETE)
        except Exception as exc:  # shown in the Acquisition panel, never raised
            if spooler is not None:
                spooler.abort()
            self._set(state=FAILED, error=describe(exc))
