"""Compute state of the cluster: a node server's workers and the rule server's view of nodes.

:func:`read_node_server` reads ``/node/status`` (per-worker state, tasks completed) and
:func:`read_rule_server_nodes` reads the rule server's ``/status`` (per-node assignments).
Neither document carries rates, so :class:`RateMeter` turns successive counters into tasks/s.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import requests

from pyme_desk.model.node_state import RuleServerNode, WorkerState

#: Seconds over which a rate is measured.
RATE_WINDOW_S = 5.0
#: Seconds one status read may take.
STATUS_TIMEOUT_S = 1.0


class RateMeter:
    """Per-key rates of increasing counters, over the last :data:`RATE_WINDOW_S` seconds."""

    def __init__(self, window: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def update(self, key: str, count: int) -> float | None:
        """Record ``count`` for ``key`` now; the rate since the oldest sample in the window
        (``None`` until there are two samples; a counter that went down starts afresh)."""
        now = self._clock()
        samples = self._samples.setdefault(key, deque())
        if samples and count < samples[-1][1]:
            samples.clear()
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        if len(samples) < 2 or now <= samples[0][0]:
            return None
        return (count - samples[0][1]) / (now - samples[0][0])

    def forget(self, keep: set[str]) -> None:
        """Drop the keys not in ``keep`` (nodes that went away)."""
        for key in set(self._samples) - keep:
            del self._samples[key]


@dataclass(frozen=True)
class NodeServerState:
    """What one ``/node/status`` says: the node's id, its workers, tasks completed so far."""

    node_id: str
    workers: tuple[WorkerState, ...]
    tasks_completed: int


def parse_node_status(doc: dict) -> NodeServerState:
    workers = tuple(WorkerState(pid=w.get("pid"), state=str(w.get("state", "?")), task=w.get("task"),
                                tasks_done=int(w.get("tasksDone") or 0), errors=int(w.get("errors") or 0),
                                restarts=int(w.get("restarts") or 0))
                    for w in doc.get("workers") or [] if isinstance(w, dict))
    return NodeServerState(str(doc.get("nodeID") or ""), workers, int(doc.get("tasksCompleted") or 0))


def read_node_server(session: requests.Session, url: str) -> NodeServerState:
    r = session.get(url.rstrip("/") + "/node/status", timeout=STATUS_TIMEOUT_S)
    r.raise_for_status()
    return parse_node_status(r.json())


def parse_rule_nodes(doc: dict, rates: RateMeter) -> tuple[RuleServerNode, ...]:
    """The ``nodes`` of a rule server's ``/status``, each with its completed tasks/s."""
    nodes = []
    for n in doc.get("nodes") or []:
        if not isinstance(n, dict):
            continue
        node_id = str(n.get("nodeID", "?"))
        completed = int(n.get("tasksCompleted") or 0)
        nodes.append(RuleServerNode(
            node_id=node_id, address=str(n.get("address") or ""), alive=bool(n.get("alive")),
            last_seen_s=float(n.get("lastSeen") or 0.0), assigned=int(n.get("tasksAssigned") or 0),
            completed=completed, failed=int(n.get("tasksFailed") or 0),
            tasks_per_s=rates.update("rule:" + node_id, completed)))
    return tuple(nodes)


def read_rule_server_nodes(session: requests.Session, url: str, rates: RateMeter) -> tuple[RuleServerNode, ...]:
    r = session.get(url.rstrip("/") + "/status", timeout=STATUS_TIMEOUT_S)
    r.raise_for_status()
    return parse_rule_nodes(r.json(), rates)
