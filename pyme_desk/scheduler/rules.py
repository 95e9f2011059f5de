"""Rules and their tasks: the rule server's state machine (protocol.md §7.5), with leases.

A *rule* is a task template plus integer task IDs ``0 .. max_tasks-1``.  Each task has a
status (``UNAVAILABLE`` until released, ``AVAILABLE``, ``ASSIGNED``, then ``COMPLETE`` or
``FAILED``), a retry count, a failure reason and an owner (the node holding it).  They live in
numpy arrays per rule, grown only as far as tasks are released, so 20 million tasks take about
11 bytes each rather than a Python object each.

How tasks move:

* release: ``UNAVAILABLE`` -> ``AVAILABLE``;
* award (bid won): ``AVAILABLE`` -> ``ASSIGNED`` to a node until ``now + task_timeout``;
* re-queue (task time-out, or the node's lease lapsed because it stopped heart-beating):
  ``ASSIGNED`` -> ``AVAILABLE`` with one more retry, or ``FAILED`` once the retries exceed
  the limit;
* return (a node shutting down gives back tasks it won but never started):
  ``ASSIGNED`` -> ``AVAILABLE`` at once, counted neither as a retry nor as a time-out;
* hand-in: ``COMPLETE``/``FAILED``.  The first hand-in that ends a task wins and every later
  one is only counted as a duplicate, so each task is counted exactly once whatever the order
  of late hand-ins.  A success always ends a task that is not yet ended (a late result is
  still a result); a failure only ends it while its node still holds it (otherwise the task
  was already taken away and is being retried).

:class:`RuleBook` holds every rule and node behind one lock; the HTTP layer, the sweeper
thread and the journal thread all go through it.  Time comes in as arguments where tests need
to control it; otherwise ``time.monotonic()`` (leases) and ``time.time()`` (rule expiry,
which survives restarts).
"""
from __future__ import annotations

import collections
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

UNAVAILABLE, AVAILABLE, ASSIGNED, COMPLETE, FAILED = 0, 1, 2, 3, 4

#: bids whose costs are all below this are awarded at once, without an auction
COST_THRESHOLD = 0.2
#: adverts list whole rules until this many task IDs are listed
MAX_ADVERTISEMENTS = 30000
#: the most tasks one rule may release (guards memory against a stray release range)
MAX_RULE_TASKS = 50_000_000
DEFAULT_MAX_TASKS = 1_000_000
DEFAULT_RULE_TIMEOUT = 3600.0
NO_OWNER = -1

#: failure reason codes stored per task
REASON_NONE, REASON_WORKER, REASON_TIMED_OUT, REASON_NODE_LOST, REASON_ABORTED = 0, 1, 2, 3, 4
REASON_TEXT = {
    REASON_WORKER: "the worker reported a failure",
    REASON_TIMED_OUT: "timed out too often",
    REASON_NODE_LOST: "its node stopped heart-beating too often",
}
#: worker-supplied failure explanations kept per rule (for the status page)
MAX_FAILURE_NOTES = 100

_RULE_ID_OK = re.compile(r"^[^~/?#&\s]{1,200}$")


class SchedulerError(Exception):
    """A request the rule book refuses; ``status`` is the HTTP code to answer with."""

    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnknownRule(SchedulerError):
    status = 404


class Conflict(SchedulerError):
    status = 409


# -- request parsing ---------------------------------------------------------------------------

@dataclass
class Bid:
    """One rule's part of a bid: unique task IDs ascending, with their costs."""

    rule_id: str
    task_ids: np.ndarray
    costs: np.ndarray
    node_id: str | None = None


@dataclass
class HandIn:
    rule_id: str
    task_ids: np.ndarray
    status: np.ndarray
    reasons: list[str | None] | None = None


def _int_array(values: Any, what: str) -> np.ndarray:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise SchedulerError(f"{what} must be a list of integers")
    try:
        return np.asarray(values, dtype=np.int64).reshape(-1)
    except OverflowError:
        raise SchedulerError(f"{what} holds an integer out of range") from None


def _rule_items(obj: Any, kind: str, shape: str) -> Iterator[tuple[int, dict, np.ndarray]]:
    """``(index, item, task IDs)`` for each ``{"ruleID", "taskIDs", ...}`` of a body that must be
    a JSON list of them; ``kind`` names an item in errors (``bid 3 ...``)."""
    if not isinstance(obj, list):
        raise SchedulerError(f"the {kind} body must be a JSON list of {shape}")
    for i, item in enumerate(obj):
        if not isinstance(item, dict) or not isinstance(item.get("ruleID"), str):
            raise SchedulerError(f"{kind} {i} must be an object with a string ruleID")
        yield i, item, _int_array(item.get("taskIDs", []), f"{kind} {i} taskIDs")


def parse_bids(obj: Any) -> list[Bid]:
    """The body of ``bid_on_tasks``: ``[{"ruleID", "taskIDs", "costs"}, ...]``."""
    bids = []
    for i, item, ids in _rule_items(obj, "bid", "{ruleID, taskIDs, costs}"):
        costs = item.get("costs")
        if costs is None:
            cost_arr = np.ones(len(ids))
        else:
            if not isinstance(costs, list) or len(costs) != len(ids) or not all(
                    isinstance(c, (int, float)) and not isinstance(c, bool) for c in costs):
                raise SchedulerError(f"bid {i} costs must be a list of numbers, one per task ID")
            cost_arr = np.asarray(costs, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(cost_arr)):
                raise SchedulerError(f"bid {i} costs must be finite numbers")
        ids, first = np.unique(ids, return_index=True)
        node = item.get("nodeID")
        bids.append(Bid(item["ruleID"], ids, cost_arr[first], node if isinstance(node, str) else None))
    return bids


def parse_handins(obj: Any) -> list[HandIn]:
    """The body of ``handin``: ``[{"ruleID", "taskIDs", "status", "reasons"?}, ...]``."""
    out = []
    for i, item, ids in _rule_items(obj, "hand-in", "{ruleID, taskIDs, status}"):
        status = item.get("status")
        if isinstance(status, int) and not isinstance(status, bool):
            status_arr = np.full(len(ids), status, dtype=np.int64)
        else:
            status_arr = _int_array(status, f"hand-in {i} status")
            if len(status_arr) != len(ids):
                raise SchedulerError(f"hand-in {i} needs one status per task ID")
        if len(status_arr) and not np.all((status_arr == COMPLETE) | (status_arr == FAILED)):
            raise SchedulerError(f"hand-in {i} status must be {COMPLETE} (complete) or {FAILED} (failed)")
        reasons = item.get("reasons")
        if reasons is not None and (not isinstance(reasons, list) or len(reasons) != len(ids)
                                    or not all(r is None or isinstance(r, str) for r in reasons)):
            raise SchedulerError(f"hand-in {i} reasons must be a list of strings or nulls, one per task ID")
        out.append(HandIn(item["ruleID"], ids, status_arr, reasons))
    return out


def parse_returns(obj: Any) -> list[tuple[str, np.ndarray]]:
    """The body of ``return_tasks``: ``[{"ruleID", "taskIDs"}, ...]`` as (rule ID, task IDs)."""
    return [(item["ruleID"], ids) for _, item, ids in _rule_items(obj, "return", "{ruleID, taskIDs}")]


def lowest_costs(rounds: list[list[Bid]]) -> list[list[np.ndarray]]:
    """For an auction round (the bids of several requests): per bid, the lowest cost any bid
    of the round offered for each of its task IDs."""
    by_rule: dict[str, list[Bid]] = {}
    for bids in rounds:
        for bid in bids:
            by_rule.setdefault(bid.rule_id, []).append(bid)
    lowest: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rule_id, bids in by_rule.items():
        ids, inverse = np.unique(np.concatenate([b.task_ids for b in bids]), return_inverse=True)
        mins = np.full(len(ids), np.inf)
        np.minimum.at(mins, inverse, np.concatenate([b.costs for b in bids]))
        lowest[rule_id] = (ids, mins)
    out = []
    for bids in rounds:
        per_bid = []
        for bid in bids:
            ids, mins = lowest[bid.rule_id]
            per_bid.append(mins[np.searchsorted(ids, bid.task_ids)])
        out.append(per_bid)
    return out


def check_on_completion(spec: Any, depth: int = 0) -> dict | None:
    """Validate a chained-rule spec ``{"template", "max_tasks", "rule_timeout", "on_completion"}``."""
    if spec is None:
        return None
    if depth > 20:
        raise SchedulerError("on_completion is nested too deeply")
    if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
        raise SchedulerError("on_completion must be an object with a string template")
    try:
        max_tasks = int(spec.get("max_tasks", 1))
        rule_timeout = float(spec.get("rule_timeout", DEFAULT_RULE_TIMEOUT))
    except (TypeError, ValueError):
        raise SchedulerError("on_completion max_tasks and rule_timeout must be numbers") from None
    if not 0 < max_tasks <= MAX_RULE_TASKS or not rule_timeout > 0:
        raise SchedulerError("on_completion max_tasks and rule_timeout must be positive")
    return {"template": spec["template"], "max_tasks": max_tasks, "rule_timeout": rule_timeout,
            "on_completion": check_on_completion(spec.get("on_completion"), depth + 1)}


# -- nodes ---------------------------------------------------------------------------------------

@dataclass
class Node:
    """A node server as the rule server sees it."""

    name: str
    index: int
    address: str = ""
    heartbeats: bool = False  # has sent a heartbeat: holds a lease
    alive: bool = True
    last_seen: float = 0.0  # monotonic time of any request carrying its identity
    last_polled: float = -math.inf  # monotonic time of its last advert fetch or bid
    assigned: int = 0
    completed: int = 0
    failed: int = 0


class RateMeter:
    """Counts events in one-second buckets; ``rate()`` is events/s over the last ``window`` s."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.buckets: collections.deque[list] = collections.deque()

    def add(self, n: int, now: float) -> None:
        if n <= 0:
            return
        sec = int(now)
        if self.buckets and self.buckets[-1][0] == sec:
            self.buckets[-1][1] += n
        else:
            self.buckets.append([sec, n])
            while self.buckets and self.buckets[0][0] <= sec - self.window:
                self.buckets.popleft()

    def rate(self, now: float) -> float:
        start = int(now) - self.window
        return sum(n for sec, n in self.buckets if sec > start) / self.window


# -- rules ---------------------------------------------------------------------------------------

class Rule:
    """One rule: its creation spec, its task arrays and running counts."""

    def __init__(self, rule_id: str, seq: int, template: str, max_tasks: int, rule_timeout: float,
                 inputs_by_task: dict[int, Any] | None, on_completion: dict | None, created: float) -> None:
        self.rule_id = rule_id
        self.seq = seq
        self.template = template
        self.max_tasks = max_tasks
        self.rule_timeout = rule_timeout
        self.inputs_by_task = inputs_by_task
        self.on_completion = on_completion
        self.created = created
        # per task, grown to ``size`` = highest released task ID + 1
        self.size = 0
        self.status = np.zeros(0, np.uint8)
        self.retries = np.zeros(0, np.uint8)
        self.reason = np.zeros(0, np.uint8)
        self.owner = np.zeros(0, np.int32)
        self.expiry = np.zeros(0, np.float32)  # lease end, seconds after the book's epoch
        self.next_expiry = math.inf  # no assigned task expires before this
        self.node_assigned: dict[int, int] = {}
        self.failure_notes: dict[int, str] = {}
        self.n_released = self.n_available = self.n_assigned = 0
        self.n_complete = self.n_failed = 0
        self.n_timed_out = self.n_complete_after_timeout = self.n_duplicates = 0
        self.n_awarded = 0
        self.cost_sum = 0.0
        self.active = True
        self.finished = False
        self.release_complete = False
        self.n_max = max_tasks
        self.expiry_wall = created + rule_timeout

    def grow(self, size: int) -> None:
        """Make room for task IDs below ``size`` (doubling, at most ``max_tasks``)."""
        if size <= len(self.status):
            self.size = max(self.size, size)
            return
        cap = min(self.max_tasks, max(size, 2 * len(self.status), 1024))
        for name in ("status", "retries", "reason", "owner", "expiry"):
            old = getattr(self, name)
            new = np.zeros(cap, old.dtype)
            if name == "owner":
                new.fill(NO_OWNER)
            new[:len(old)] = old
            setattr(self, name, new)
        self.size = size

    def queue_info(self) -> dict:
        return {"tasksPosted": self.n_released, "tasksRunning": self.n_assigned,
                "tasksCompleted": self.n_complete, "tasksFailed": self.n_failed,
                "averageExecutionCost": self.cost_sum / self.n_awarded if self.n_awarded else 0.0,
                "active": self.active, "tasksTimedOut": self.n_timed_out,
                "tasksCompleteAfterTimeout": self.n_complete_after_timeout,
                "finished": self.finished, "expired": False}

    # -- journal form ----------------------------------------------------------------------
    def spec(self) -> dict:
        """The parameters the rule was created with (never change)."""
        return {"seq": self.seq, "template": self.template, "max_tasks": self.max_tasks,
                "rule_timeout": self.rule_timeout, "created": self.created,
                "inputsByTask": None if self.inputs_by_task is None
                else {str(k): v for k, v in self.inputs_by_task.items()},
                "on_completion": self.on_completion}

    def state(self) -> dict:
        """Counts and flags that, with the task arrays, restore the rule."""
        return {"n_timed_out": self.n_timed_out, "n_complete_after_timeout": self.n_complete_after_timeout,
                "n_duplicates": self.n_duplicates, "n_awarded": self.n_awarded, "cost_sum": self.cost_sum,
                "active": self.active, "finished": self.finished, "release_complete": self.release_complete,
                "n_max": self.n_max, "expiry_wall": self.expiry_wall, "size": self.size,
                "failure_notes": {str(k): v for k, v in self.failure_notes.items()}}

    def arrays(self) -> dict[str, np.ndarray]:
        n = self.size
        return {"status": self.status[:n].copy(), "retries": self.retries[:n].copy(),
                "reason": self.reason[:n].copy(), "owner": self.owner[:n].copy()}

    @classmethod
    def restore(cls, rule_id: str, spec: dict, state: dict, arrays: dict[str, np.ndarray],
                lease_end: float) -> "Rule":
        inputs = spec.get("inputsByTask")
        rule = cls(rule_id, int(spec["seq"]), spec["template"], int(spec["max_tasks"]),
                   float(spec["rule_timeout"]), None if inputs is None else {int(k): v for k, v in inputs.items()},
                   spec.get("on_completion"), float(spec["created"]))
        size = int(state["size"])
        if size:
            rule.grow(size)
            for name, arr in arrays.items():
                getattr(rule, name)[:size] = arr[:size]
        for key in ("n_timed_out", "n_complete_after_timeout", "n_duplicates", "n_awarded", "cost_sum",
                    "active", "finished", "release_complete", "n_max", "expiry_wall"):
            setattr(rule, key, state[key])
        rule.failure_notes = {int(k): v for k, v in state.get("failure_notes", {}).items()}
        counts = np.bincount(rule.status[:size], minlength=5)
        rule.n_available, rule.n_assigned = int(counts[AVAILABLE]), int(counts[ASSIGNED])
        rule.n_complete, rule.n_failed = int(counts[COMPLETE]), int(counts[FAILED])
        rule.n_released = size - int(counts[UNAVAILABLE])
        assigned = rule.status[:size] == ASSIGNED
        rule.expiry[:size][assigned] = lease_end  # leases restart with the server
        if rule.n_assigned:
            rule.next_expiry = lease_end
            owners = rule.owner[:size][assigned]
            for idx, n in zip(*np.unique(owners, return_counts=True)):
                rule.node_assigned[int(idx)] = int(n)
        return rule


@dataclass
class JournalBatch:
    """What changed since the last journal write (taken atomically from the book)."""

    specs: dict[str, dict] = field(default_factory=dict)  # new rules
    states: dict[str, tuple[dict, dict[str, np.ndarray]]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    nodes: list[list] | None = None  # [[name, heartbeats], ...] by index, when changed
    next_seq: int = 0

    def __bool__(self) -> bool:
        return bool(self.specs or self.states or self.removed or self.nodes is not None)


class RuleBook:
    """Every rule and node, behind one lock; see the module docstring."""

    def __init__(self, *, task_timeout: float = 600.0, retries: int = 1, node_timeout: float = 6.0,
                 bidder_window: float = 3.0) -> None:
        self.task_timeout = float(task_timeout)
        self.retries = int(retries)
        self.node_timeout = float(node_timeout)
        self.bidder_window = float(bidder_window)
        self.lock = threading.RLock()
        self.rules: dict[str, Rule] = {}  # creation order
        self.nodes: dict[str, Node] = {}
        self.node_list: list[Node] = []
        self.next_seq = 1
        self.epoch = time.monotonic()
        self.assigned_rate = RateMeter()
        self.completed_rate = RateMeter()
        self.failed_rate = RateMeter()
        self.version = 0  # changes whenever the set of available tasks may have changed
        self.changes = 0  # changes whenever any rule's counts may have changed
        self._new: set[str] = set()
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._nodes_dirty = False

    # -- helpers ---------------------------------------------------------------------------
    def _rel(self, now: float) -> float:
        return now - self.epoch

    def _rule(self, rule_id: str) -> Rule:
        rule = self.rules.get(rule_id)
        if rule is None:
            raise UnknownRule(f"no such rule: {rule_id!r} (never created, or expired)")
        return rule

    def _changed(self, rule: Rule) -> None:
        self._dirty.add(rule.rule_id)
        self.changes += 1

    def _touch(self, rule: Rule, wall: float) -> None:
        self._changed(rule)
        if not rule.finished:
            rule.expiry_wall = wall + rule.rule_timeout

    def node(self, node_id: str | None, address: str, now: float | None = None, *, polled: bool = False) -> Node:
        """The node a request comes from: its ``nodeID``, else its IP address; marks it seen."""
        now = time.monotonic() if now is None else now
        name = node_id or address
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                node = Node(name, len(self.node_list), address)
                self.nodes[name] = node
                self.node_list.append(node)
                self._nodes_dirty = True
            node.address = address
            node.last_seen = now
            node.alive = True
            if polled:
                node.last_polled = now
            return node

    def heartbeat(self, node_id: str, address: str, now: float | None = None) -> Node:
        with self.lock:
            node = self.node(node_id, address, now)
            if not node.heartbeats:
                node.heartbeats = True
                self._nodes_dirty = True
            return node

    # -- rules -----------------------------------------------------------------------------
    def add_rule(self, template: str, *, max_tasks: int = DEFAULT_MAX_TASKS,
                 rule_timeout: float = DEFAULT_RULE_TIMEOUT, rule_id: str | None = None,
                 inputs_by_task: Any = None, on_completion: Any = None,
                 release: tuple[int, int] | None = None, now: float | None = None) -> str:
        """Create a rule (and release ``release`` = [start, end) at once); returns its ID."""
        wall = time.time() if now is None else now
        if not isinstance(template, str):
            raise SchedulerError("the template must be a string (JSON text with {{ruleID}}/{{taskID}} placeholders)")
        if not 0 < max_tasks <= MAX_RULE_TASKS:
            raise SchedulerError(f"max_tasks must be between 1 and {MAX_RULE_TASKS}, not {max_tasks}")
        if not rule_timeout > 0:
            raise SchedulerError("the rule timeout must be positive")
        inputs = None
        if inputs_by_task is not None:
            if not isinstance(inputs_by_task, dict):
                raise SchedulerError("inputsByTask must be an object {taskID: inputs}")
            try:
                inputs = {int(k): v for k, v in inputs_by_task.items()}
            except ValueError:
                raise SchedulerError("inputsByTask keys must be integer task IDs") from None
        chained = check_on_completion(on_completion)
        with self.lock:
            if rule_id is None:
                rule_id = f"{self.next_seq:06d}-{uuid.uuid4().hex}"
            elif not _RULE_ID_OK.match(rule_id):
                raise SchedulerError(f"bad ruleID {rule_id!r}: no '~', '/', '?', '#', '&' or spaces")
            elif rule_id in self.rules:
                raise Conflict(f"a rule with ID {rule_id!r} already exists")
            rule = Rule(rule_id, self.next_seq, template, int(max_tasks), float(rule_timeout),
                        inputs, chained, wall)
            if release is not None:
                self._check_range(rule, *release)
            self.next_seq += 1
            self.rules[rule_id] = rule
            self._new.add(rule_id)
            self._changed(rule)
            if release is not None:
                self._release(rule, *release, wall)
            return rule_id

    @staticmethod
    def _check_range(rule: Rule, start: int, end: int) -> None:
        if not 0 <= start <= end <= rule.max_tasks:
            raise SchedulerError(f"release range [{start}, {end}) is outside the rule's tasks [0, {rule.max_tasks})")

    def release(self, rule_id: str, start: int, end: int, now: float | None = None) -> int:
        """Make tasks ``[start, end)`` available; returns how many were newly released."""
        wall = time.time() if now is None else now
        with self.lock:
            rule = self._rule(rule_id)
            self._check_range(rule, start, end)
            if rule.release_complete:
                raise Conflict(f"rule {rule_id} was marked release-complete; it takes no more releases")
            return self._release(rule, start, end, wall)

    def _release(self, rule: Rule, start: int, end: int, wall: float) -> int:
        if end > rule.size:
            rule.grow(end)
        part = rule.status[start:end]
        fresh = part == UNAVAILABLE
        n = int(np.count_nonzero(fresh))
        part[fresh] = AVAILABLE
        rule.n_released += n
        rule.n_available += n
        self.version += 1
        self._touch(rule, wall)
        return n

    def mark_release_complete(self, rule_id: str, n_tasks: int | None = None, now: float | None = None) -> None:
        wall = time.time() if now is None else now
        with self.lock:
            rule = self._rule(rule_id)
            if n_tasks is not None and not 0 <= n_tasks <= rule.max_tasks:
                raise SchedulerError(f"n_tasks must be between 0 and max_tasks ({rule.max_tasks})")
            rule.release_complete = True
            rule.n_max = rule.n_released if n_tasks is None else n_tasks
            self._touch(rule, wall)
            self._check_finished(rule, wall)

    def inactivate(self, rule_id: str, now: float | None = None) -> None:
        wall = time.time() if now is None else now
        with self.lock:
            rule = self._rule(rule_id)
            rule.active = False
            self.version += 1
            self._touch(rule, wall)

    # -- bidding ---------------------------------------------------------------------------
    def advertisements(self) -> list[dict]:
        """Adverts of active rules in creation order, whole rules until MAX_ADVERTISEMENTS IDs."""
        out, total = [], 0
        with self.lock:
            for rule in self.rules.values():
                if not rule.active or not rule.n_available:
                    continue
                ids = np.flatnonzero(rule.status[:rule.size] == AVAILABLE)
                advert = {"ruleID": rule.rule_id, "taskTemplate": rule.template, "availableTaskIDs": ids.tolist()}
                if rule.inputs_by_task is not None:
                    inputs = rule.inputs_by_task
                    advert["inputsByTask"] = {str(i): inputs[i] for i in advert["availableTaskIDs"] if i in inputs}
                out.append(advert)
                total += len(ids)
                if total >= MAX_ADVERTISEMENTS:
                    break
        return out

    def _live_bidders(self, now: float) -> int:
        since = now - self.bidder_window
        return sum(1 for n in self.node_list if n.last_polled >= since)

    def award(self, node: Node, bids: list[Bid], *, min_costs: list[np.ndarray] | None = None,
              now: float | None = None) -> list[dict]:
        """Award each bid the tasks it may have (see the server docs); one result per bid.

        ``min_costs[i]`` (auctions) holds, per task ID of bid ``i``, the lowest cost any bidder
        offered in the round: a bid wins only tasks where its cost equals it.
        """
        now = time.monotonic() if now is None else now
        wall = time.time()
        results = []
        with self.lock:
            node.last_polled = now
            n_live = max(1, self._live_bidders(now))
            for i, bid in enumerate(bids):
                rule = self.rules.get(bid.rule_id)
                if rule is None or not rule.active:
                    results.append({"ruleID": bid.rule_id, "taskIDs": [], "template": ""})
                    continue
                ids, costs = bid.task_ids, bid.costs
                inside = (ids >= 0) & (ids < rule.size)
                if not inside.all():
                    ids, costs = ids[inside], costs[inside]
                    mins = None if min_costs is None else min_costs[i][inside]
                else:
                    mins = None if min_costs is None else min_costs[i]
                free = rule.status[ids] == AVAILABLE
                if mins is not None:
                    free &= costs <= mins
                local = costs < COST_THRESHOLD
                take = free & local
                remote = free & ~local
                if n_live > 1 and remote.any():
                    share = math.ceil((rule.n_available + rule.n_assigned) / n_live)
                    cap = max(0, share - rule.node_assigned.get(node.index, 0) - int(np.count_nonzero(take)))
                    remote[np.flatnonzero(remote)[cap:]] = False
                take |= remote
                won, won_costs = ids[take], costs[take]
                if len(won):
                    self._assign(rule, node, won, won_costs, now, wall)
                results.append({"ruleID": rule.rule_id, "taskIDs": won.tolist(), "template": rule.template})
        return results

    def _assign(self, rule: Rule, node: Node, ids: np.ndarray, costs: np.ndarray, now: float, wall: float) -> None:
        n = len(ids)
        lease_end = self._rel(now) + self.task_timeout
        rule.status[ids] = ASSIGNED
        rule.owner[ids] = node.index
        rule.expiry[ids] = lease_end
        rule.next_expiry = min(rule.next_expiry, float(np.float32(lease_end)))
        rule.n_available -= n
        rule.n_assigned += n
        rule.n_awarded += n
        rule.cost_sum += float(costs.sum())
        rule.node_assigned[node.index] = rule.node_assigned.get(node.index, 0) + n
        node.assigned += n
        self.assigned_rate.add(n, now)
        self.version += 1
        self._touch(rule, wall)

    def _unassign(self, rule: Rule, ids: np.ndarray) -> None:
        """Take ``ids`` (all ASSIGNED) off their owners' counts."""
        owners, counts = np.unique(rule.owner[ids], return_counts=True)
        for idx, n in zip(owners.tolist(), counts.tolist()):
            if idx == NO_OWNER:
                continue
            left = rule.node_assigned.get(idx, 0) - n
            if left > 0:
                rule.node_assigned[idx] = left
            else:
                rule.node_assigned.pop(idx, None)
            self.node_list[idx].assigned -= n
        rule.owner[ids] = NO_OWNER
        rule.n_assigned -= len(ids)

    def return_tasks(self, node: Node, returns: list[tuple[str, np.ndarray]],
                     now: float | None = None) -> tuple[int, int, list[str]]:
        """Put the tasks ``node`` holds among ``returns`` back to AVAILABLE, with no retry counted.

        Returns (tasks returned, tasks ignored, unknown rule IDs): a task is ignored when the node
        does not hold it (handed in, re-queued, held by another node, never released, out of
        range) or its rule is unknown.
        """
        wall = time.time() if now is None else now
        returned = ignored = 0
        unknown: list[str] = []
        with self.lock:
            for rule_id, task_ids in returns:
                ids = np.unique(task_ids)
                rule = self.rules.get(rule_id)
                if rule is None:
                    unknown.append(rule_id)
                    ignored += len(ids)
                    continue
                asked = len(ids)
                ids = ids[(ids >= 0) & (ids < rule.size)]
                held = ids[(rule.status[ids] == ASSIGNED) & (rule.owner[ids] == node.index)]
                ignored += asked - len(held)
                if not len(held):
                    continue
                self._unassign(rule, held)
                rule.status[held] = AVAILABLE
                rule.n_available += len(held)
                returned += len(held)
                self.version += 1
                self._touch(rule, wall)
        return returned, ignored, unknown

    # -- hand-ins --------------------------------------------------------------------------
    def handin(self, node: Node, handins: list[HandIn], now: float | None = None) -> list[str]:
        """Apply hand-ins; returns the rule IDs that are unknown (their entries are skipped)."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        with self.lock:
            unknown = [h.rule_id for h in handins if h.rule_id not in self.rules]
            for h in handins:  # check every range before changing anything
                rule = self.rules.get(h.rule_id)
                if rule is not None and len(h.task_ids) and (h.task_ids.min() < 0 or h.task_ids.max() >= rule.max_tasks):
                    raise SchedulerError(f"hand-in for rule {h.rule_id} names task IDs outside [0, {rule.max_tasks})")
            for h in handins:
                rule = self.rules.get(h.rule_id)
                if rule is not None and len(h.task_ids):
                    self._handin(rule, node, h, now, wall)
            return unknown

    def _handin(self, rule: Rule, node: Node, h: HandIn, now: float, wall: float) -> None:
        ids, first = np.unique(h.task_ids, return_index=True)
        status = h.status[first]
        known = ids < rule.size
        ids, status, first = ids[known], status[known], first[known]
        old = rule.status[ids]
        ended = (old == COMPLETE) | (old == FAILED)
        rule.n_duplicates += int(np.count_nonzero(ended))
        held = (old == ASSIGNED) & (rule.owner[ids] == node.index)
        success = status == COMPLETE
        complete = success & ((old == ASSIGNED) | (old == AVAILABLE))
        fail = ~success & held
        late = complete & ~held
        done = complete | fail
        if not done.any():
            self._touch(rule, wall)
            return
        leaving = ids[done & (old == ASSIGNED)]
        if len(leaving):
            self._unassign(rule, leaving)
        rule.n_available -= int(np.count_nonzero(done & (old == AVAILABLE)))
        if (done & (old == AVAILABLE)).any():
            self.version += 1
        ok_ids, fail_ids = ids[complete], ids[fail]
        rule.status[ok_ids] = COMPLETE
        rule.status[fail_ids] = FAILED
        rule.reason[fail_ids] = REASON_WORKER
        n_ok, n_fail = len(ok_ids), len(fail_ids)
        rule.n_complete += n_ok
        rule.n_failed += n_fail
        rule.n_complete_after_timeout += int(np.count_nonzero(late))
        node.completed += n_ok
        node.failed += n_fail
        self.completed_rate.add(n_ok, now)
        self.failed_rate.add(n_fail, now)
        if h.reasons is not None and n_fail:
            for j in np.flatnonzero(fail).tolist():
                note = h.reasons[int(first[j])]
                if note and len(rule.failure_notes) < MAX_FAILURE_NOTES:
                    rule.failure_notes[int(ids[j])] = note[:2000]
        self._touch(rule, wall)
        self._check_finished(rule, wall)

    # -- time passing ----------------------------------------------------------------------
    def sweep(self, now: float | None = None, wall: float | None = None) -> dict[str, int]:
        """Re-queue expired leases, finish and expire rules; returns what it did (for logs/tests)."""
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        done = {"timed_out": 0, "node_lost": 0, "failed": 0, "expired": 0}
        with self.lock:
            dead = [n.index for n in self.node_list
                    if n.heartbeats and n.alive and now - n.last_seen > self.node_timeout]
            for idx in dead:
                self.node_list[idx].alive = False
            rel = self._rel(now)
            for rule in list(self.rules.values()):
                if rule.n_assigned and (rel >= rule.next_expiry or
                                        (dead and any(i in rule.node_assigned for i in dead))):
                    self._requeue_expired(rule, rel, dead, wall, done)
                self._check_finished(rule, wall)
                idle = not rule.n_assigned and (not rule.n_available or not rule.active)
                if idle and wall > rule.expiry_wall:
                    del self.rules[rule.rule_id]
                    self._removed.add(rule.rule_id)
                    self._new.discard(rule.rule_id)
                    self._dirty.discard(rule.rule_id)
                    self.version += 1
                    self.changes += 1
                    done["expired"] += 1
        return done

    def _requeue_expired(self, rule: Rule, rel: float, dead: list[int], wall: float, done: dict) -> None:
        n = rule.size
        assigned = rule.status[:n] == ASSIGNED
        timed = assigned & (rule.expiry[:n] <= rel)
        lost = (assigned & ~timed & np.isin(rule.owner[:n], dead)) if dead else None
        for mask, code, key in ((timed, REASON_TIMED_OUT, "timed_out"), (lost, REASON_NODE_LOST, "node_lost")):
            if mask is None or not mask.any():
                continue
            ids = np.flatnonzero(mask)
            self._unassign(rule, ids)
            retries = rule.retries[ids].astype(np.int32) + 1
            rule.retries[ids] = np.minimum(retries, 255)
            over = retries > self.retries
            failed, back = ids[over], ids[~over]
            rule.status[failed] = FAILED
            rule.reason[failed] = code
            rule.status[back] = AVAILABLE
            rule.n_failed += len(failed)
            rule.n_available += len(back)
            rule.n_timed_out += len(ids)
            done[key] += len(ids)
            done["failed"] += len(failed)
            self.version += 1
        still = rule.status[:n] == ASSIGNED
        rule.next_expiry = float(rule.expiry[:n][still].min()) if still.any() else math.inf
        self._changed(rule)

    def _check_finished(self, rule: Rule, wall: float) -> None:
        if rule.finished or rule.n_available or rule.n_complete + rule.n_failed < rule.n_max:
            return
        rule.finished = True
        rule.expiry_wall = wall + (300.0 if rule.n_failed else 60.0)
        self._changed(rule)
        child = rule.on_completion
        if child is not None:
            self.add_rule(child["template"], max_tasks=child["max_tasks"], rule_timeout=child["rule_timeout"],
                          on_completion=child["on_completion"], release=(0, child["max_tasks"]), now=wall)

    # -- reports ---------------------------------------------------------------------------
    def queue_info(self) -> dict[str, dict]:
        with self.lock:
            return {rid: rule.queue_info() for rid, rule in self.rules.items()}

    def status(self, now: float | None = None) -> dict:
        """Rules, nodes and rates for the GUI (``/status``)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            rules = []
            for rule in self.rules.values():
                info = rule.queue_info()
                reasons = {}
                if rule.n_failed:
                    failed = rule.reason[:rule.size][rule.status[:rule.size] == FAILED]
                    reasons = {code: n for code, n in enumerate(np.bincount(failed).tolist()) if n}
                info.update({
                    "ruleID": rule.rule_id, "created": rule.created, "maxTasks": rule.max_tasks,
                    "released": rule.n_released, "releaseComplete": rule.release_complete,
                    "tasksAvailable": rule.n_available, "duplicateHandins": rule.n_duplicates,
                    "template": rule.template[:200],
                    "nodes": {self.node_list[i].name: n for i, n in rule.node_assigned.items()},
                    "failureReasons": {self._reason_text(code): n for code, n in reasons.items()},
                    "failureNotes": [{"taskID": t, "reason": r} for t, r in rule.failure_notes.items()],
                })
                rules.append(info)
            nodes = [{"nodeID": n.name, "address": n.address, "heartbeats": n.heartbeats, "alive": n.alive,
                      "lastSeen": round(now - n.last_seen, 3), "tasksAssigned": n.assigned,
                      "tasksCompleted": n.completed, "tasksFailed": n.failed} for n in self.node_list]
            rates = {"assigned": self.assigned_rate.rate(now), "completed": self.completed_rate.rate(now),
                     "failed": self.failed_rate.rate(now)}
        return {"rules": rules, "nodes": nodes, "rates": rates}

    def _reason_text(self, code: int) -> str:
        text = REASON_TEXT.get(code, "unknown")
        if code in (REASON_TIMED_OUT, REASON_NODE_LOST):
            text += f" (retry limit {self.retries})"
        return text

    # -- journal ---------------------------------------------------------------------------
    def take_journal_batch(self) -> JournalBatch:
        """Copy out everything changed since the last call (new rules, states, removals)."""
        with self.lock:
            batch = JournalBatch(next_seq=self.next_seq)
            for rid in self._new:
                batch.specs[rid] = self.rules[rid].spec()
            for rid in self._dirty:
                rule = self.rules[rid]
                batch.states[rid] = (rule.state(), rule.arrays())
            batch.removed = sorted(self._removed)
            if self._nodes_dirty:
                batch.nodes = [[n.name, n.heartbeats] for n in self.node_list]
            self._new, self._dirty, self._removed = set(), set(), set()
            self._nodes_dirty = False
        return batch

    def requeue_batch(self, batch: JournalBatch) -> None:
        """A batch could not be written: mark its contents changed again so the next write has them."""
        with self.lock:
            self._new |= {rid for rid in batch.specs if rid in self.rules}
            self._dirty |= {rid for rid in batch.states if rid in self.rules}
            self._removed |= set(batch.removed)
            self._nodes_dirty |= batch.nodes is not None

    def restore(self, rules: Iterable[tuple[str, dict, dict, dict[str, np.ndarray]]],
                nodes: list[list], next_seq: int, now: float | None = None) -> None:
        """Load the journal's rules (in creation order) and nodes into an empty book."""
        now = time.monotonic() if now is None else now
        with self.lock:
            for name, heartbeats in nodes:
                node = Node(name, len(self.node_list), heartbeats=bool(heartbeats), last_seen=now)
                self.nodes[name] = node
                self.node_list.append(node)
            lease_end = self._rel(now) + self.task_timeout
            for rule_id, spec, state, arrays in rules:
                if "owner" in arrays:  # a damaged journal must not name nodes that do not exist
                    owner = arrays["owner"]
                    owner[(owner < NO_OWNER) | (owner >= len(self.node_list))] = NO_OWNER
                rule = Rule.restore(rule_id, spec, state, arrays, lease_end)
                self.rules[rule_id] = rule
                for idx, n in rule.node_assigned.items():
                    if 0 <= idx < len(self.node_list):
                        self.node_list[idx].assigned += n
            self.next_seq = max(next_seq, max((r.seq for r in self.rules.values()), default=0) + 1)
            self.version += 1
            self.changes += 1
