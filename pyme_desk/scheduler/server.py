"""The rule server: hands out analysis tasks over PYME's rule-server protocol (protocol.md §7).

``RuleServer`` is a plain object like the data server: ``start()`` returns once it listens,
``url`` says where, ``stop()`` finishes the requests in flight, writes the journal and
unregisters.  The CLI (``pyme-desk ruleserver``), the tests and the benchmark use it alike.

HTTP API
========

Every endpoint answers GET and POST alike, reads parameters from the query string and a JSON
body (optionally ``Content-Encoding: gzip``) on either method, and gzips responses of 1 KiB or
more for clients that send ``Accept-Encoding: gzip``.  Errors are ``{"error": "<reason>"}``
with a 4xx status (400 malformed parameter/body, 404 unknown rule or path, 409 conflict);
never a 500 traceback.  ``"ok": "True"`` is a *string* where PYME sends one (PYME clients
test truthiness, so ``"False"`` is truthy too: read the other fields).

PYME's endpoints (same shapes as PYME)
--------------------------------------
``/add_integer_id_rule?max_tasks=N&release_start=a&release_end=b&ruleID=ID&timeout=T``
    body ``{"template": "<string>", "inputsByTask": {"<id>": {...}}, "on_completion": {...}}``;
    only ``template`` (a string, stored and handed back verbatim) is required.  ``max_tasks``
    defaults to 1e6 (int or float text), ``timeout`` (rule inactivity expiry, s) to 3600;
    ``release_start``/``release_end`` release ``[a, b)`` at once.  ``ruleID`` is optional
    (must not contain ``~``; 409 if it exists); generated IDs are ``%06d-<32 hex>``.
    -> ``{"ok": "True", "ruleID": "000001-9f1c..."}``
``/release_rule_tasks?ruleID=ID&release_start=a&release_end=b``
    tasks ``[a, b)`` not yet released become available (0 <= a <= b <= max_tasks, else 400;
    409 after ``mark_release_complete``).  -> ``{"ok": "True"}``
``/mark_release_complete?ruleID=ID[&n_tasks=N]``
    no more releases; the rule finishes once ``N`` tasks (default: the highest released task
    ID + 1) are complete or failed.  -> ``{"ok": "True"}``
``/inactivate_rule?ruleID=ID``
    stop advertising and awarding the rule's tasks (abort); hand-ins are still counted.
    -> ``{"ok": "True"}``
``/task_advertisements[?nodeID=N]``
    -> ``[{"ruleID": ID, "taskTemplate": "<template>", "availableTaskIDs": [0, 1, ...],
    "inputsByTask": {"<id>": {...}}}, ...]`` (``inputsByTask`` only when the rule has one,
    restricted to the listed IDs).  Active rules in creation order, task IDs ascending
    (oldest first), whole rules until 30,000 IDs are listed.  Rebuilt after a change at most
    every ``advert_interval`` (0.05 s), and less often when a rebuild is slow (rules of
    hundreds of thousands of tasks), so that rebuilding takes at most ~10% of one core.
``/bid_on_tasks[?nodeID=N]``
    body ``[{"ruleID": ID, "taskIDs": [int, ...], "costs": [float, ...]}, ...]`` (``costs``
    optional, default 1.0 each; a bid may also carry ``"nodeID"``).
    -> ``[{"ruleID": ID, "taskIDs": [awarded ints, ascending], "template": "<template>"}, ...]``,
    one entry per bid, in order.  A bid on an unknown, expired or inactive rule gets
    ``"template": ""`` and no IDs (not an error: rules come and go between advert and bid).
    A bid whose costs are all < 0.2 gets the tasks still available at once ("buy now"); the
    other bids of the request join an auction that closes 0.2 s after its first bid (other
    requests are served meanwhile), and the reply comes when it closes: per task the lowest
    cost wins, ties go to the earliest bid, and a node gets at most a fair share of a rule's
    non-local (cost >= 0.2) tasks: ``ceil((available + assigned) / live bidders) - already assigned to it``, where
    live bidders are the nodes that fetched adverts or bid in the last 3 s.
``/handin[?nodeID=N]``
    body ``[{"ruleID": ID, "taskIDs": [int, ...], "status": [3 | 4 per ID]}, ...]``
    (3 = complete, 4 = failed; ``status`` may also be a single int for all IDs; optional
    ``"reasons": [str | null per ID]`` explains failures).
    -> ``{"ok": "True"}``, or ``{"ok": "False", "error": "unknown rules: [...]"}`` when some
    rules do not exist (the others are still applied).  Every task is counted exactly once
    as completed or failed: the first hand-in that ends a task wins, later ones are counted as
    duplicates; a success handed in late (after the task was re-queued or re-assigned) still
    completes the task; a failure from a node the task was taken away from is ignored.
``/distributor/queues``
    -> ``{"ok": true, "result": {"<ruleID>": {"tasksPosted", "tasksRunning",
    "tasksCompleted", "tasksFailed", "averageExecutionCost", "active", "tasksTimedOut",
    "tasksCompleteAfterTimeout", "finished", "expired"}}}`` (cached up to 0.5 s).
``/queue_info_longpoll``
    the same after 0.5 s (waits without holding up other requests).
``/``
    an HTML status page for browsers (``Accept: text/html``), else the ``/status`` JSON.

pyme-desk additions
-------------------
Node identity: a node server should pass ``nodeID=<id>`` on ``task_advertisements``,
``bid_on_tasks``, ``handin`` and ``node_heartbeat``.  The ID must be unique per node-server
*process run* (e.g. ``<computer>:<pid>:<start time>``), so a restarted node does not inherit
the leases of its dead predecessor.  Without ``nodeID`` (PYME node servers) the node is
identified by its IP address and its tasks are recovered only by the task time-out.

``/node_heartbeat?nodeID=N``
    -> ``{"ok": true, "nodeID": N, "heartbeatInterval": 1.0, "leaseTimeout": 6.0,
    "tasksAssigned": <tasks this node holds>}``.  Once a node has sent one heartbeat it holds
    a *lease*: if no heartbeat (or other request carrying its ``nodeID``) arrives for
    ``leaseTimeout`` seconds, all tasks assigned to it are re-queued (counted in
    ``tasksTimedOut``).  Send one every ``heartbeatInterval`` seconds.
``/return_tasks?nodeID=N``
    body ``[{"ruleID": ID, "taskIDs": [int, ...]}, ...]``: a node server shutting down gives
    back the tasks it won but never started.  Those still assigned to node ``N`` become
    available again at once (oldest first as ever), counted neither as a retry nor in
    ``tasksTimedOut``; the change is in the journal before the reply.  Tasks the node does not
    hold (handed in, re-queued, held by another node) and tasks of unknown rules are ignored.
    -> ``{"ok": true, "returned": <tasks made available>, "ignored": <tasks left alone>,
    "unknownRules": [ID, ...]}``; 400 without ``nodeID`` or with a malformed body.
Task time-out: a task assigned for longer than the task time-out (``--task-timeout``, default
600 s) is re-queued whether or not its node heart-beats.  A task re-queued more than
``ruleserver-retries`` times (default 1) becomes FAILED with a reason.
``/status``
    JSON for the GUI::

        {"ok": true,
         "server": {"name", "url", "version", "uptime" (s), "taskTimeout", "retries",
                    "leaseTimeout", "heartbeatInterval", "journal" (path or null)},
         "rates": {"assigned", "completed", "failed"},          (tasks/s over the last 10 s)
         "rules": [{...the queue info fields above..., "ruleID", "created" (Unix s),
                    "maxTasks", "released", "releaseComplete", "tasksAvailable",
                    "duplicateHandins", "template" (first 200 characters),
                    "nodes": {nodeID: tasks it holds now},
                    "failureReasons": {reason text: count},
                    "failureNotes": [{"taskID", "reason"}] (worker-supplied, first 100)}],
         "nodes": [{"nodeID", "address", "heartbeats" (holds a lease), "alive",
                    "lastSeen" (s ago), "tasksAssigned", "tasksCompleted", "tasksFailed"}]}
"""
from __future__ import annotations

import asyncio
import gzip
import html
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pyme_desk import __version__
from pyme_desk.discovery.addresses import advertise_address, is_loopback
from pyme_desk.errors import UsageError
from pyme_desk.names import service_name
from pyme_desk.scheduler.journal import Journal, JournalError, JournalWriter
from pyme_desk.scheduler.rules import (COST_THRESHOLD, DEFAULT_MAX_TASKS, DEFAULT_RULE_TIMEOUT, Bid, Node,
                                       RuleBook, SchedulerError, lowest_costs, parse_bids, parse_handins,
                                       parse_returns)
from pyme_desk.web.errors import HTTPError
from pyme_desk.web.http import Request, Response
from pyme_desk.web.jsonapi import GZIP_MIN, JSONApp, blocking, json_body, param
from pyme_desk.web.service import BackgroundServer, ServerObject

log = logging.getLogger(__name__)

TASKDIST_PROTOCOL = "_pyme-taskdist"
PROCESS_NAME = "PYMERuleServer"
#: how long /queue_info_longpoll waits before answering (s)
LONGPOLL_WAIT = 0.5
#: the shortest time between two advert rebuilds (s): new tasks reach the nodes this much sooner
ADVERT_INTERVAL = 0.05
#: the most of one core that advert rebuilds may take: a rebuild that took t s waits t / this
ADVERT_CPU_SHARE = 0.1


def _count(text: str) -> int:
    """An integer query value; PYME clients may write ``1e6`` or ``100.0``."""
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(text)
    return int(value)


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


class _CachedJSON:
    """One JSON document, encoded once per change and served plain or gzipped."""

    def __init__(self) -> None:
        self.key: Any = object()
        self.built = -math.inf
        self.build_s = 0.0  # how long the last build took
        self.data = b""
        self.gzipped: bytes | None = None

    def set(self, key: Any, obj: Any, now: float) -> None:
        self.key, self.built = key, now
        self.data = json.dumps(obj, separators=(",", ":")).encode()
        self.gzipped = None

    def response(self, request: Request) -> Response:
        if len(self.data) >= GZIP_MIN and "gzip" in request.header("accept-encoding", ""):
            if self.gzipped is None:
                self.gzipped = gzip.compress(self.data, 1)
            return Response(200, self.gzipped, "application/json", headers=[("Content-Encoding", "gzip")])
        return Response(200, self.data, "application/json")


class Auction:
    """Collects the bids that arrive within ``wait`` s of the first, then awards them together.

    Runs in the server's event loop: a bidder awaits its result while other requests are served.
    """

    def __init__(self, book: RuleBook, wait: float) -> None:
        self.book = book
        self.wait = wait
        self.entries: list[tuple[Node, list[Bid], asyncio.Future]] = []
        self.timer: asyncio.TimerHandle | None = None

    async def bid(self, node: Node, bids: list[Bid]) -> list[dict]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.entries.append((node, bids, future))
        if self.timer is None:
            self.timer = loop.call_later(self.wait, self._close)
        return await future

    def _close(self) -> None:
        entries, self.entries, self.timer = self.entries, [], None
        mins = lowest_costs([bids for _, bids, _ in entries])
        for (node, bids, future), min_costs in zip(entries, mins):
            if future.done():
                continue
            try:
                future.set_result(self.book.award(node, bids, min_costs=min_costs))
            except Exception as e:  # reaches the bidder's request as its error
                future.set_exception(e)


def _api(fn):
    """Turn the rule book's refusals into JSON 4xx answers."""
    if asyncio.iscoroutinefunction(fn):
        async def wrapped(request, body):
            try:
                return await fn(request, body)
            except SchedulerError as e:
                raise HTTPError(e.status, e.reason) from None
    else:
        def wrapped(request, body):
            try:
                return fn(request, body)
            except SchedulerError as e:
                raise HTTPError(e.status, e.reason) from None
    wrapped.__name__ = fn.__name__
    if getattr(fn, "__pyme_blocking__", False):
        wrapped = blocking(wrapped)
    return wrapped


class RuleServerApp:
    """The endpoints; see the module docstring.  Handlers are quick and run in the event loop,
    except where they wait for the journal."""

    def __init__(self, server: "RuleServer") -> None:
        self.server = server
        self.book = server.book
        self.auction = Auction(self.book, server.auction_wait)
        self.adverts = _CachedJSON()
        self.queues = _CachedJSON()
        routes = {
            "add_integer_id_rule": self.add_integer_id_rule,
            "release_rule_tasks": self.release_rule_tasks,
            "mark_release_complete": self.mark_release_complete,
            "inactivate_rule": self.inactivate_rule,
            "task_advertisements": self.task_advertisements,
            "bid_on_tasks": self.bid_on_tasks,
            "handin": self.handin,
            "distributor/queues": self.distributor_queues,
            "queue_info_longpoll": self.queue_info_longpoll,
            "node_heartbeat": self.node_heartbeat,
            "return_tasks": self.return_tasks,
            "status": self.status,
            "": self.index,
        }
        self.app = JSONApp({path: _api(fn) for path, fn in routes.items()}, server.executor)

    # the HTTP core's application interface
    def begin(self, request: Request):
        return self.app.begin(request)

    async def handle(self, request: Request, sink) -> Response:
        return await self.app.handle(request, sink)

    def _node(self, request: Request, node_id: str | None = None, *, polled: bool = False) -> Node:
        node_id = request.query.get("nodeID") or node_id
        address = request.peer.rsplit(":", 1)[0]
        return self.book.node(node_id, address, polled=polled)

    # -- rules ---------------------------------------------------------------------------
    @blocking
    def add_integer_id_rule(self, request: Request, body: bytes) -> dict:
        spec = json_body(body)
        if not isinstance(spec, dict):
            raise HTTPError(400, "the rule body must be a JSON object with a template")
        release = None
        if "release_start" in request.query or "release_end" in request.query:
            release = (param(request, "release_start", _count), param(request, "release_end", _count))
        rule_id = self.book.add_rule(
            spec.get("template"), max_tasks=param(request, "max_tasks", _count, DEFAULT_MAX_TASKS),
            rule_timeout=param(request, "timeout", _positive, DEFAULT_RULE_TIMEOUT),
            rule_id=request.query.get("ruleID") or None, inputs_by_task=spec.get("inputsByTask"),
            on_completion=spec.get("on_completion"), release=release)
        log.info("new rule %s (max_tasks %s)", rule_id, request.query.get("max_tasks", DEFAULT_MAX_TASKS))
        self.server.sync_journal()
        return {"ok": "True", "ruleID": rule_id}

    def release_rule_tasks(self, request: Request, body: bytes) -> dict:
        self.book.release(param(request, "ruleID"), param(request, "release_start", _count),
                          param(request, "release_end", _count))
        return {"ok": "True"}

    def mark_release_complete(self, request: Request, body: bytes) -> dict:
        self.book.mark_release_complete(param(request, "ruleID"), param(request, "n_tasks", _count, None))
        return {"ok": "True"}

    def inactivate_rule(self, request: Request, body: bytes) -> dict:
        rule_id = param(request, "ruleID")
        self.book.inactivate(rule_id)
        log.info("rule %s inactivated", rule_id)
        return {"ok": "True"}

    # -- bidding -------------------------------------------------------------------------
    def task_advertisements(self, request: Request, body: bytes) -> Response:
        self._node(request, polled=True)
        now = time.monotonic()
        cache = self.adverts
        interval = self.server.advert_interval  # 0: after every change, slow or not (tests)
        gap = max(interval, cache.build_s / ADVERT_CPU_SHARE) if interval else 0.0
        if cache.key != self.book.version and now - cache.built >= gap:
            version = self.book.version  # read first: a change while building forces a rebuild
            cache.set(version, self.book.advertisements(), now)
            cache.build_s = time.monotonic() - now
        return cache.response(request)

    async def bid_on_tasks(self, request: Request, body: bytes) -> list[dict]:
        bids = parse_bids(json_body(body))
        node = self._node(request, next((b.node_id for b in bids if b.node_id), None), polled=True)
        cheap = [bool((b.costs < COST_THRESHOLD).all()) for b in bids]
        now = [i for i, c in enumerate(cheap) if c]
        later = [i for i, c in enumerate(cheap) if not c]
        results: list[dict] = [{}] * len(bids)
        if now:
            for i, result in zip(now, self.book.award(node, [bids[i] for i in now])):
                results[i] = result
        if later:
            for i, result in zip(later, await self.auction.bid(node, [bids[i] for i in later])):
                results[i] = result
        return results

    def handin(self, request: Request, body: bytes) -> dict:
        handins = parse_handins(json_body(body))
        unknown = self.book.handin(self._node(request), handins)
        if unknown:
            return {"ok": "False", "error": f"unknown rules: {sorted(set(unknown))}"}
        return {"ok": "True"}

    @blocking
    def return_tasks(self, request: Request, body: bytes) -> dict:
        node_id = param(request, "nodeID")
        if not node_id:
            raise HTTPError(400, "return_tasks needs the nodeID of the node that holds the tasks")
        returns = parse_returns(json_body(body))
        returned, ignored, unknown = self.book.return_tasks(self._node(request, node_id), returns)
        if returned:
            log.info("node %s returned %d tasks", node_id, returned)
            self.server.sync_journal()
        return {"ok": True, "returned": returned, "ignored": ignored, "unknownRules": sorted(set(unknown))}

    def node_heartbeat(self, request: Request, body: bytes) -> dict:
        node = self.book.heartbeat(param(request, "nodeID"), request.peer.rsplit(":", 1)[0])
        return {"ok": True, "nodeID": node.name, "heartbeatInterval": self.server.heartbeat_interval,
                "leaseTimeout": self.book.node_timeout, "tasksAssigned": node.assigned}

    # -- progress ------------------------------------------------------------------------
    def distributor_queues(self, request: Request, body: bytes) -> Response:
        cache = self.queues
        key = self.book.changes
        if cache.key != key:
            cache.set(key, {"ok": True, "result": self.book.queue_info()}, time.monotonic())
        return cache.response(request)

    async def queue_info_longpoll(self, request: Request, body: bytes) -> Response:
        await asyncio.sleep(LONGPOLL_WAIT)
        return self.distributor_queues(request, body)

    def status(self, request: Request, body: bytes) -> dict:
        return {"ok": True, "server": self.server.describe(), **self.book.status()}

    def index(self, request: Request, body: bytes):
        if "text/html" not in request.header("accept", ""):
            return self.status(request, body)
        return Response(200, render_status_page(self.server.describe(), self.book.status()).encode(),
                        "text/html; charset=utf-8")


def render_status_page(server: dict, status: dict) -> str:
    """A plain HTML page of rules and nodes (refreshes itself every 2 s)."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['ruleID'])}</td><td>{r['tasksPosted']}</td><td>{r['tasksRunning']}</td>"
        f"<td>{r['tasksCompleted']}</td><td>{r['tasksFailed']}</td><td>{r['tasksTimedOut']}</td>"
        f"<td>{'yes' if r['active'] else 'no'}</td><td>{'yes' if r['finished'] else 'no'}</td></tr>"
        for r in status["rules"])
    nodes = "".join(
        f"<tr><td>{e(n['nodeID'])}</td><td>{e(n['address'])}</td><td>{'yes' if n['alive'] else 'no'}</td>"
        f"<td>{n['lastSeen']:.1f} s</td><td>{n['tasksAssigned']}</td><td>{n['tasksCompleted']}</td>"
        f"<td>{n['tasksFailed']}</td></tr>" for n in status["nodes"])
    rates = status["rates"]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
        f"<title>PYME rule server</title></head><body><h1>Rule server {e(server['name'])}</h1>"
        f"<p>{rates['completed']:.0f} tasks/s completed, {rates['failed']:.1f} failed/s, "
        f"up {server['uptime']:.0f} s</p>"
        "<h2>Rules</h2><table border='1'><tr><th>rule</th><th>posted</th><th>running</th><th>completed</th>"
        f"<th>failed</th><th>timed out</th><th>active</th><th>finished</th></tr>{rows}</table>"
        "<h2>Nodes</h2><table border='1'><tr><th>node</th><th>address</th><th>alive</th><th>last seen</th>"
        f"<th>assigned</th><th>completed</th><th>failed</th></tr>{nodes}</table></body></html>")


class RuleServer(ServerObject):
    """A rule server; see the module docstring.

    ``journal``: sqlite file that keeps rules across restarts (None: in memory only).
    ``task_timeout``: seconds a task may stay assigned; ``retries``: re-queues before FAILED;
    ``node_timeout``: a heart-beating node silent this long loses its tasks;
    ``sweep_interval``: how often leases and rule expiry are checked;
    ``advert_interval``: the shortest time between two advert rebuilds (0: rebuild after every
    change, however long rebuilding takes).
    """

    def __init__(self, *, port: int = 0, bind: str = "127.0.0.1", journal: Path | None = None,
                 task_timeout: float = 600.0, retries: int = 1, node_timeout: float = 6.0,
                 heartbeat_interval: float = 1.0, sweep_interval: float = 1.0, auction_wait: float = 0.2,
                 advert_interval: float = ADVERT_INTERVAL, bidder_window: float = 3.0,
                 journal_interval: float = 0.2,
                 advertise: str = "none", advertise_address: str | None = None) -> None:
        if advertise not in ("zeroconf", "local", "none"):
            raise UsageError(f"unknown --advertise mode {advertise!r}: use zeroconf, local or none")
        if advertise == "zeroconf" and is_loopback(bind):
            raise UsageError("zeroconf advertisement needs a network bind address "
                             "(--bind 0.0.0.0 or an interface IP); use --advertise local for 127.0.0.1")
        if not task_timeout > 0 or not node_timeout > 0 or retries < 0:
            raise UsageError("the task and node time-outs must be positive and retries not negative")
        self.bind = bind
        self.port = port
        self.journal_path = Path(journal) if journal else None
        self.heartbeat_interval = heartbeat_interval
        self.sweep_interval = sweep_interval
        self.auction_wait = auction_wait
        self.advert_interval = advert_interval
        self.journal_interval = journal_interval
        self.advertise = advertise
        self.advertise_address = advertise_address
        self.book = RuleBook(task_timeout=task_timeout, retries=retries, node_timeout=node_timeout,
                             bidder_window=bidder_window)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ruleserver")
        self.url = ""
        self.address = "127.0.0.1"
        self.name = service_name(PROCESS_NAME)
        self.started = time.time()
        self._writer: JournalWriter | None = None
        self._advertiser = None
        self._stop_sweeping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="rule sweeper", daemon=True)
        self._service = BackgroundServer(lambda: RuleServerApp(self), bind, port, name="rule server",
                                         on_started=self._on_started, on_stopped=self._on_stopped)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "RuleServer":
        if self.journal_path is not None:
            try:
                journal = Journal(self.journal_path)
            except JournalError as e:
                raise UsageError(str(e)) from None
            rules, nodes, next_seq = journal.load()
            self.book.restore(rules, nodes, next_seq)
            if rules:
                log.info("resumed %d rules from the journal %s", len(rules), self.journal_path)
            self._writer = JournalWriter(self.book, journal, self.journal_interval)
            self._writer.start()
        try:
            self.port = self._service.start(timeout)
        except BaseException:
            if self._writer is not None:
                self._writer.stop()
            raise
        return self


    def sync_journal(self) -> None:
        """Wait until the journal holds every change made so far (no-op without a journal)."""
        if self._writer is not None and not self._writer.sync():
            log.warning("the journal %s did not confirm a write in time", self.journal_path)

    def describe(self) -> dict:
        book = self.book
        return {"name": self.name, "url": self.url, "version": __version__,
                "uptime": time.time() - self.started, "taskTimeout": book.task_timeout,
                "retries": book.retries, "leaseTimeout": book.node_timeout,
                "heartbeatInterval": self.heartbeat_interval,
                "journal": str(self.journal_path) if self.journal_path else None}

    def _on_started(self, port: int) -> None:
        if is_loopback(self.bind):
            self.address = "127.0.0.1" if self.bind in ("", "localhost") else self.bind
        else:
            self.address, warning = advertise_address(self.advertise_address)
            if warning:
                log.warning(warning)
        self.url = f"http://{self.address}:{port}/"
        self._sweeper.start()
        from pyme_desk.discovery.advertiser import start_advertiser

        self._advertiser = start_advertiser(TASKDIST_PROTOCOL, self.name, port, self.advertise, self.address)
        log.info("rule server at %s (task time-out %.0f s, retries %d, lease %.1f s)", self.url,
                 self.book.task_timeout, self.book.retries, self.book.node_timeout)

    def _on_stopped(self) -> None:
        if self._advertiser is not None:
            self._advertiser.stop()
        self._stop_sweeping.set()
        if self._sweeper.is_alive():
            self._sweeper.join(10)
        if self._writer is not None:
            self._writer.stop()
        self.executor.shutdown(wait=True)

    def _sweep_loop(self) -> None:
        while not self._stop_sweeping.wait(self.sweep_interval):
            try:
                done = self.book.sweep()
            except Exception:
                log.exception("the lease sweep failed")
                continue
            if any(done.values()):
                log.info("sweep: %(timed_out)d timed out, %(node_lost)d from lost nodes re-queued, "
                         "%(failed)d failed after retries, %(expired)d rules expired", done)
