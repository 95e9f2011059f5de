"""How cheap a task is for this node: its bid cost (protocol.md §8.2).

A node bids low for tasks whose data it holds on its own data root, so the rule server hands
each task to the node that needs no network to read it.  Costs, as PYME's node servers bid:

* a task that reads frames of a series (``inputs.frames`` plus ``taskdef.frameIndex``, as the
  localization task has): :data:`LOCAL_COST` when ``inputs.frames`` is an existing local path,
  or when ``<series>/frameNNNNN.pzf`` lies under this node's data root and the URI's cluster
  name is this node's (or empty); else :data:`REMOTE_COST`;
* a recipe task: 1.0, times 0.2 for each input that is simulated (``__sim``) or local;
* any other task: :data:`LOCAL_COST` when every input is local (a task with no inputs reads
  nothing, so it is local everywhere), else :data:`REMOTE_COST`.

A task whose cost is at most :data:`LOCAL_THRESHOLD` counts as local: the node bids on those
first, and on the others only when there are no local ones.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from pyme_desk.cluster.errors import InvalidNameError
from pyme_desk.cluster.uris import is_cluster_uri, parse_cluster_uri
from pyme_desk.storage.listing import frame_name

LOCAL_COST = 0.01
REMOTE_COST = 1.0
LOCAL_THRESHOLD = 0.99
#: Factor a recipe's cost is multiplied by for each of its inputs that is local.
RECIPE_LOCAL_FACTOR = 0.2
SIMULATION_INPUT = "__sim"


class Locality:
    """What lies on this node: ``data_root`` (None: nothing) served as cluster ``server_filter``."""

    def __init__(self, data_root: str | Path | None, server_filter: str) -> None:
        self.data_root = Path(data_root).resolve() if data_root is not None else None
        self.server_filter = server_filter

    def local_path(self, uri: str) -> Path | None:
        """Where ``uri`` would lie on this node's disk: a plain path as it is, a cluster URI of
        this node's cluster under the data root; None for anything else (http URLs, other clusters)."""
        if is_cluster_uri(uri):
            if self.data_root is None:
                return None
            try:
                target = parse_cluster_uri(uri)
            except InvalidNameError:
                return None
            if target.server_filter not in ("", self.server_filter):
                return None
            return self.data_root / target.path
        if "://" in uri or not uri:
            return None
        return Path(uri)

    def holds(self, uri: Any) -> bool:
        """True when ``uri`` names a file or directory on this node's disk."""
        if not isinstance(uri, str):
            return False
        path = self.local_path(uri)
        return path is not None and path.exists()

    def holds_frame(self, series_uri: Any, index: int) -> bool:
        """True when frame ``index`` of the series is on this node's data root (or the series is a
        local file, which then holds every frame)."""
        if not isinstance(series_uri, str):
            return False
        if not is_cluster_uri(series_uri) and self.holds(series_uri):
            return True
        path = self.local_path(series_uri) if is_cluster_uri(series_uri) else None
        return path is not None and os.path.exists(path / frame_name(index))


def task_cost(task: Mapping[str, Any], locality: Locality) -> float:
    """The bid cost of ``task`` on this node; see the module docstring."""
    inputs = task.get("inputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    taskdef = task.get("taskdef")
    taskdef = taskdef if isinstance(taskdef, Mapping) else {}
    if task.get("type") == "recipe":
        cost = REMOTE_COST
        for name, uri in inputs.items():
            if name == SIMULATION_INPUT or locality.holds(uri):
                cost *= RECIPE_LOCAL_FACTOR
        return cost
    if "frames" in inputs and "frameIndex" in taskdef:
        try:
            index = int(taskdef["frameIndex"])
        except (TypeError, ValueError):
            return REMOTE_COST
        return LOCAL_COST if locality.holds_frame(inputs["frames"], index) else REMOTE_COST
    return LOCAL_COST if all(locality.holds(uri) for uri in inputs.values()) else REMOTE_COST


def is_local(cost: float) -> bool:
    return cost <= LOCAL_THRESHOLD
