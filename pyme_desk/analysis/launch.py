"""Launch a localization analysis of a spooled series on the cluster (protocol.md §8.5).

:class:`LocalizationLaunch` does what PYME's rule client does, in order:

1. choose the results file ``<dir>/analysis/<stub>.h5r`` (``_1``, ``_2``, ... if taken) and the
   one data server that will hold it;
2. ``PUT .../__aggregate_h5r/<results>.h5r/MetaData`` with the analysis metadata (the series'
   metadata, the analysis settings and ``EstimatedLaserOnFrameNo``) and store a JSON copy as
   ``<results>.h5r.json``, which every task references;
3. post a ``localization`` rule (template §7.4) to the rule server, with ``max_tasks`` = the
   frame count of a complete series, else 1e6;
4. on each :meth:`~LocalizationLaunch.poll`, release the tasks of frames that have arrived since
   (from ``Analysis.StartAt``; the series is listed again at most every ``list_interval`` s)
   and, once ``events.json`` is there, file the events, release the rest and mark the release
   complete.

The CLI (``pyme-desk analyse``) and the GUI drive it the same way: ``start()``, then ``poll()``
about once a second until :attr:`Progress.finished`.  :meth:`new_results` reads the rows that
reached the results file since its last call (for live previews and localization rates).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import requests

from pyme_desk.analysis.fitmodules import module_for_backend
from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.uris import format_cluster_uri, parse_cluster_uri
from pyme_desk.formats.npy import load_npy

#: ``max_tasks`` of a rule whose series is still being spooled (as PYME).
OPEN_ENDED_TASKS = 1_000_000
#: Most tasks released by one call (as PYME).
MAX_RELEASE = 100_000
RULE_TIMEOUT_S = 3600
DEFAULT_THRESHOLD = 5.0
HTTP_TIMEOUT_S = 10.0

#: Analysis settings written when the caller gives none (see :mod:`.pipeline`).
DEFAULT_SETTINGS: dict[str, Any] = {
    "Analysis.DetectionThreshold": DEFAULT_THRESHOLD,
    "Analysis.SNRThreshold": True,
    "Analysis.BGRange": [-10, 0],
    "Analysis.StartAt": 0,
    "Analysis.DetectionRadiusLowpass": 1.0,
    "Analysis.DetectionRadiusHighpass": 3.0,
    "Analysis.DebounceRadius": 5,
    "Analysis.ROISize": 3,
    "Analysis.PSFSigma": 130.0,
    "Analysis.FitSigma": True,
}


class LaunchError(RuntimeError):
    """The analysis could not be launched or followed; the message says why."""


@dataclass
class Progress:
    """Where an analysis stands; task counts come from the rule server."""

    frames_available: int
    frames_released: int
    release_complete: bool
    tasks_completed: int
    tasks_failed: int
    finished: bool


def results_stub(series_path: str) -> tuple[str, str]:
    """``(<dir>/analysis, <stub>)`` for a series path ``<dir>/<stub>[.ext]``."""
    parent, _, name = series_path.strip("/").rpartition("/")
    stub = name.rsplit(".", 1)[0] if "." in name else name
    return (f"{parent}/analysis" if parent else "analysis"), stub


class LocalizationLaunch:
    """One analysis of one series; see the module docstring.

    ``series_uri``: ``pyme-cluster://<filter>/<series>``.  ``client``: a ClusterClient for that
    cluster.  ``ruleserver``: the rule server's base URL.  ``fit``: ``cpu``, ``gpu`` or
    ``auto``.  ``settings``: ``Analysis.*`` keys overriding :data:`DEFAULT_SETTINGS`.
    ``list_interval``: least seconds between listings of the series (0: on every poll).  The
    listing of a series being spooled grows with every frame, so a long-running follower (the
    desk) lists it less often than it polls (PYME: every 5 s).
    """

    def __init__(self, series_uri: str, client: ClusterClient, ruleserver: str, *, fit: str = "auto",
                 threshold: float | None = None, settings: Mapping[str, Any] | None = None,
                 list_interval: float = 0.0):
        from pyme_desk.formats.series import open_series

        self.series_uri = series_uri
        self.client = client
        self.ruleserver = ruleserver.rstrip("/")
        target = parse_cluster_uri(series_uri)
        self.server_filter = target.server_filter or client.server_filter
        self.series_path = target.path.strip("/")
        # Listed again only by poll(), not on every len() or is_complete.
        self.series = open_series(self.series_path, client=client, refresh_interval=float("inf"))
        self.list_interval = list_interval
        self._listed_at = time.monotonic()
        module, backend = module_for_backend(fit)
        self.settings = {**DEFAULT_SETTINGS, **dict(settings or {}),
                         "Analysis.FitModule": module, "Analysis.FitBackend": backend}
        if threshold is not None:
            self.settings["Analysis.DetectionThreshold"] = float(threshold)
        self.start_at = int(self.settings.get("Analysis.StartAt", 0))
        self.results_path = ""
        self.rule_id = ""
        self.metadata: dict[str, Any] = {}
        self._released = self.start_at
        self._release_complete = False
        self._rows_seen = 0
        self._session = requests.Session()

    # -- launching ------------------------------------------------------------------------------

    @property
    def results_uri(self) -> str:
        """``pyme-cluster://<filter>/<dir>/analysis/<stub>.h5r``."""
        return format_cluster_uri(self.server_filter, self.results_path)

    def _aggregate(self, part: str) -> str:
        return format_cluster_uri(self.server_filter, f"__aggregate_h5r/{self.results_path}/{part}")

    def start(self) -> "LocalizationLaunch":
        """Choose the results file, store the metadata and post the rule."""
        directory, stub = results_stub(self.series_path)
        name, k = f"{directory}/{stub}.h5r", 0
        while self.client.exists(name) or self.client.exists(name + ".json"):
            k += 1
            name = f"{directory}/{stub}_{k}.h5r"
        self.results_path = name
        self.metadata = {**self.series.metadata, **self.settings, "EstimatedLaserOnFrameNo": self.start_at}
        fit_results_url = self.client.aggregate_url(self._aggregate("FitResults"))
        self.client.file_results(self._aggregate("MetaData"), self.metadata)
        self.client.put_file(name + ".json", json.dumps(self.metadata, indent=2, sort_keys=True).encode())
        template = json.dumps({
            "id": "{{ruleID}}~{{taskID}}", "type": "localization",
            "taskdef": {"frameIndex": "{{taskID}}",
                        "metadata": format_cluster_uri(self.server_filter, name + ".json", upper=True)},
            "inputs": {"frames": format_cluster_uri(self.server_filter, self.series_path, upper=True)},
            "outputs": {"fitResults": fit_results_url}})
        complete = self.series.is_complete
        max_tasks = len(self.series) if complete else OPEN_ENDED_TASKS
        answer = self._call("add_integer_id_rule", {"timeout": RULE_TIMEOUT_S, "max_tasks": max_tasks},
                            body={"template": template})
        self.rule_id = str(answer.get("ruleID") or "")
        if not self.rule_id:
            raise LaunchError(f"the rule server did not return a rule ID: {answer}")
        return self

    # -- following --------------------------------------------------------------------------------

    def poll(self) -> Progress:
        """Release newly arrived frames (and finish the release once the series is complete);
        return the progress."""
        if not self._release_complete:
            if time.monotonic() - self._listed_at >= self.list_interval:
                self.series.refresh()
                self._listed_at = time.monotonic()
            available = len(self.series)
            complete = self.series.is_complete
            self._release_up_to(available)
            if complete:
                self._finish_release(available)
        info = self.rule_info()
        return Progress(len(self.series), self._released - self.start_at, self._release_complete,
                        int(info.get("tasksCompleted", 0)), int(info.get("tasksFailed", 0)),
                        bool(info.get("finished", False)))

    def _release_up_to(self, available: int) -> None:
        while self._released < available:
            end = min(available, self._released + MAX_RELEASE)
            self._call("release_rule_tasks", {"ruleID": self.rule_id, "release_start": self._released,
                                              "release_end": end})
            self._released = end

    def _finish_release(self, available: int) -> None:
        events = self.series.events
        if events:
            self.client.file_results(self._aggregate("Events"), [list(e) for e in events])
        self._release_up_to(available)
        self._call("mark_release_complete", {"ruleID": self.rule_id,
                                             "n_tasks": max(available - self.start_at, 0)})
        self._release_complete = True

    def rule_info(self) -> dict:
        """The rule server's record of this rule (``tasksCompleted``, ``finished``, ...)."""
        queues = self._call("distributor/queues", {})
        result = queues.get("result") if isinstance(queues, dict) else None
        info = result.get(self.rule_id) if isinstance(result, dict) else None
        return info if isinstance(info, dict) else {}

    def cancel(self) -> None:
        """Stop handing out this analysis' tasks."""
        if self.rule_id:
            self._call("inactivate_rule", {"ruleID": self.rule_id})

    def new_results(self) -> np.ndarray | None:
        """FitResults rows filed since the last call (None before the table exists)."""
        server = self.client.aggregate_url(self._aggregate("FitResults")).split("__aggregate_h5r/")[0]
        try:
            r = self._session.get(f"{server}{self.results_path}/FitResults.npy",
                                  params={"from": self._rows_seen}, timeout=HTTP_TIMEOUT_S)
        except requests.RequestException as e:
            raise LaunchError(f"cannot read the results from {server}: {e}") from None
        if r.status_code != 200:
            return None
        rows = load_npy(r.content)
        self._rows_seen += len(rows)
        return rows

    def close(self) -> None:
        self.series.close()
        self._session.close()

    def _call(self, endpoint: str, params: Mapping[str, Any], body: Any = None) -> Any:
        url = f"{self.ruleserver}/{endpoint}"
        try:
            r = (self._session.post(url, params=dict(params), json=body, timeout=HTTP_TIMEOUT_S) if body is not None
                 else self._session.get(url, params=dict(params), timeout=HTTP_TIMEOUT_S))
        except requests.RequestException as e:
            raise LaunchError(f"rule server {self.ruleserver} unreachable: {e}") from None
        try:
            answer = r.json()
        except ValueError:
            answer = None
        if r.status_code != 200:
            reason = answer.get("error") if isinstance(answer, dict) else r.text[:200]
            raise LaunchError(f"rule server {endpoint}: HTTP {r.status_code}: {reason}")
        return answer


def wait(launch: LocalizationLaunch, *, interval: float = 1.0, timeout: float | None = None,
         on_progress=None) -> Progress:
    """Poll until the rule has finished (or ``timeout`` s passed); returns the last progress."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        progress = launch.poll()
        if on_progress is not None:
            on_progress(progress)
        if progress.finished or (deadline is not None and time.monotonic() >= deadline):
            return progress
        time.sleep(interval)
