"""The node server: wins tasks from the rule server and runs them on local worker processes.

``NodeServer`` is a plain object like the data and rule servers: ``start()`` returns once it
listens and its workers are starting, ``url`` says where, ``stop()`` shuts down in order: stop
bidding → let workers finish their tasks, up to ``drain_timeout`` → stop the workers → give the
tasks won but not run back to the rule server → hand in everything done → stop serving.  With a
rule server that keeps leases (pyme-desk's) the queued tasks are taken out first, so no worker
starts them, and given back with ``/return_tasks`` (no retry counted); PYME's rule server has
no such call, so there the workers first work through the queue, and what is left over comes
back by the rule server's task time-out.  The CLI (``pyme-desk nodeserver``), the tests and the
benchmark use it alike.  Its parts: :mod:`.ruleserver_client` (finding and calling the rule
server), :mod:`.bidder` (the bidding loop), :mod:`.taskqueue` (the local queue),
:mod:`.handins` (batched hand-ins and heartbeats), :mod:`.pool` (worker processes).

HTTP API for workers (protocol.md §8.3; PYME's workers use it too, so the shapes are PYME's)
----------------------------------------------------------------------------------------
``/node/tasks?workerID=W&numWant=N``
    waits up to ``nodeserver-worker-get-timeout`` s for a task, without holding up other
    requests, then takes what is queued up to ``N`` (and the first task's
    ``optimal-chunk-size``) -> ``{"ok": true, "result": [task, ...]}`` (maybe empty).
``/node/handin?taskID=<ruleID>~<n>&status=success|failure``
    -> ``{"ok": true}``.  pyme-desk workers may instead send a JSON body
    ``[{"taskID", "status", "reason" (optional)}, ...]`` to hand in a batch in one request.
``/node/status``
    -> ``{"Polling": bool, "nQueued": int}`` as PYME, plus ``nodeID``, ``ruleServer`` (URL or
    null), ``connected``, ``nInFlight``, ``handinsPending``, ``tasksCompleted``,
    ``tasksFailed``, ``tasksRequeued`` (re-run after a worker died), ``tasksWon``,
    ``bidRounds`` and ``workers``: per
    worker ``{"slot", "pid", "workerID", "state": "starting"|"idle"|"busy"|"restarting",
    "task" (the task it works on, or null), "tasksHeld", "tasksDone", "errors",
    "restarts"}``.
``/node/config``
    -> ``{"nodeID", "serverFilter", "servers", "dataRoot", "workerGetTimeout"}``: what a
    pyme-desk worker needs to reach the cluster.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pyme_desk.errors import UsageError
from pyme_desk.names import computer_name, service_name
from pyme_desk.node.bidder import Bidder
from pyme_desk.node.handins import STATUS_COMPLETE, STATUS_FAILED, HandinReporter, return_tasks
from pyme_desk.node.locality import Locality
from pyme_desk.node.pool import WorkerPool
from pyme_desk.node.ruleserver_client import TASKDIST_PROTOCOL, RuleServerLink
from pyme_desk.node.taskqueue import TaskQueue
from pyme_desk.node.templates import split_task_key
from pyme_desk.web.errors import HTTPError
from pyme_desk.web.http import Request
from pyme_desk.web.jsonapi import JSONApp, json_body, param
from pyme_desk.web.service import BackgroundServer

log = logging.getLogger(__name__)

NODE_PROCESS_NAME = "PYMENodeServer"
HANDIN_STATUS = {"success": STATUS_COMPLETE, "failure": STATUS_FAILED}


def make_node_id(pid: int | None = None, started: float | None = None) -> str:
    """``<computer>:<pid>:<start time>``: unique per node-server run, as rule-server leases need."""
    pid = os.getpid() if pid is None else pid
    started = time.time() if started is None else started
    return f"{computer_name()}:{pid}:{int(started * 1000)}"


class NodeServer:
    """A node server; see the module docstring.

    ``ruleserver``: the rule server's URL, or None/``"auto"`` to discover it (the same-machine
    registry, and zeroconf when ``advertise`` is ``zeroconf``).  ``workers``: worker processes
    (None: CPU count; 0: none, for a node whose workers are started by hand).  ``data_root`` and
    ``server_filter``: what this node holds, for bidding with locality and for its workers'
    cluster access; ``servers``: the cluster's data servers (None: discover them).
    ``chunk_size``: tasks queued per worker (PYME's ``nodeserver-chunksize``).
    """

    def __init__(self, *, ruleserver: str | None = None, workers: int | None = None, port: int = 0,
                 bind: str = "127.0.0.1", data_root: str | Path | None = None,
                 server_filter: str | None = None, servers: list[str] | None = None,
                 advertise: str = "none", advertise_address: str | None = None,
                 chunk_size: int = 50, worker_get_timeout: float = 60.0, allow_nonlocal: bool = True,
                 log_dir: Path | None = None, drain_timeout: float = 5.0, poll_interval: float = 0.1) -> None:
        if advertise not in ("zeroconf", "local", "none"):
            raise UsageError(f"unknown advertisement mode {advertise!r}: use zeroconf, local or none")
        n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
        if n_workers < 0:
            raise UsageError(f"the number of workers must be 0 or more, not {workers}")
        if chunk_size < 1:
            raise UsageError(f"the chunk size must be at least 1, not {chunk_size}")
        self.node_id = make_node_id()
        self.n_workers = n_workers
        self.bind = bind
        self.port = port
        self.server_filter = computer_name() if server_filter is None else server_filter
        self.data_root = Path(data_root).resolve() if data_root is not None else None
        self.servers = list(servers) if servers else None
        self.advertise = advertise
        self.advertise_address = advertise_address
        self.worker_get_timeout = worker_get_timeout
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.drain_timeout = drain_timeout
        self.url = ""
        rule_url = None if ruleserver in (None, "", "auto") else ruleserver
        self.link = RuleServerLink(rule_url, self.node_id, use_zeroconf=advertise == "zeroconf")
        self.queue = TaskQueue()
        self.reporter = HandinReporter(self.link)
        self.bidder = Bidder(self.link, self.queue, Locality(self.data_root, self.server_filter),
                             capacity=chunk_size * max(1, n_workers), allow_nonlocal=allow_nonlocal,
                             poll_interval=poll_interval)
        self.pool: WorkerPool | None = None
        #: unstarted tasks given back to the rule server on stop
        self.tasks_returned = 0
        self._advertiser = None
        self._stopped = threading.Event()
        self._service = BackgroundServer(lambda: NodeApp(self).app(), bind, port, name="node server",
                                         on_started=self._on_started, on_stopped=self._on_stopped)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "NodeServer":
        self.port = self._service.start(timeout)
        host = "127.0.0.1" if self.bind in ("", "0.0.0.0", "::", "localhost") else self.bind
        self.url = f"http://{host}:{self.port}/"
        self.link.start()
        self.reporter.start()
        self.bidder.start()
        if self.n_workers:
            self.pool = WorkerPool(self.n_workers, self.url, log_dir=self.log_dir,
                                   on_exit=self.queue.requeue_worker)
            self.pool.start()
        log.info("node server %s at %s with %d workers", self.node_id, self.url, self.n_workers)
        return self

    def stop(self, grace: float = 10.0, flush_timeout: float = 5.0) -> None:
        """Shut down in order (see the module docstring), giving workers ``grace`` s to finish
        and the last hand-ins ``flush_timeout`` s to reach the rule server; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.bidder.stop()
        giving_back = self.link.leases
        unstarted = self.queue.withdraw() if giving_back else []
        if self.pool is not None and not self.queue.wait_until_drained(self.drain_timeout):
            log.info("stopping with %d tasks queued and %d running", self.queue.queued(), self.queue.in_flight())
        if self.pool is not None:
            self.pool.request_stop()
        self.queue.close()
        if self.pool is not None:
            self.pool.stop(grace)
        if giving_back:  # what our (now stopped) workers did not finish goes back too
            unstarted += self.queue.withdraw(held_too=self.pool is not None)
            self.tasks_returned = return_tasks(self.link, unstarted, flush_timeout)
        elif self.queue.queued() or self.queue.in_flight():
            log.info("the rule server keeps no leases: its task time-out will hand out the %d tasks "
                     "left here again", self.queue.queued() + self.queue.in_flight())
        self.reporter.stop(flush_timeout)
        self.link.stop()
        self._service.stop(grace)

    def __enter__(self) -> "NodeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _on_started(self, port: int) -> None:
        self.queue.attach(self._service.loop)
        from pyme_desk.discovery.advertiser import start_advertiser

        try:
            self._advertiser = start_advertiser(TASKDIST_PROTOCOL, service_name(NODE_PROCESS_NAME), port,
                                                self.advertise, self.advertise_address)
        except ValueError as e:
            raise UsageError(str(e)) from None

    def _on_stopped(self) -> None:
        if self._advertiser is not None:
            self._advertiser.stop()

    # -- state -----------------------------------------------------------------------------------

    def status(self) -> dict:
        """The ``/node/status`` document (see the module docstring)."""
        records = {r.pid: r for r in self.queue.workers()}
        workers = []
        for slot in self.pool.snapshot() if self.pool is not None else []:
            record = records.pop(slot["pid"], None) if slot["pid"] is not None else None
            workers.append(_worker_state(slot, record))
        for record in records.values():  # workers we did not start (PYME's, or started by hand)
            workers.append(_worker_state({"slot": None, "pid": record.pid, "alive": True, "restarts": 0},
                                         record))
        return {"Polling": self.bidder.running and self.link.connected, "nQueued": self.queue.queued(),
                "nodeID": self.node_id, "ruleServer": self.link.url, "connected": self.link.connected,
                "nInFlight": self.queue.in_flight(), "handinsPending": self.reporter.pending(),
                "tasksCompleted": self.queue.completed, "tasksFailed": self.queue.failed,
                "tasksRequeued": self.queue.requeued, "tasksWon": self.bidder.won,
                "bidRounds": self.bidder.rounds, "workers": workers}

    def config_document(self) -> dict:
        return {"nodeID": self.node_id, "serverFilter": self.server_filter, "servers": self.servers,
                "dataRoot": str(self.data_root) if self.data_root is not None else None,
                "workerGetTimeout": self.worker_get_timeout}

    def hand_in(self, items: list[tuple[str, str, str | None]], worker_id: str | None = None) -> None:
        """Record a worker's hand-ins ``(taskID, "success"|"failure", reason)`` and queue them for
        the rule server; HTTPError 400 (and nothing recorded) if any is malformed."""
        parsed = []
        for task_id, status, reason in items:
            code = HANDIN_STATUS.get(status)
            if code is None:
                raise HTTPError(400, f"status must be 'success' or 'failure', not {status!r}")
            try:
                rule_id, number = split_task_key(task_id)
            except ValueError as e:
                raise HTTPError(400, str(e)) from None
            parsed.append((task_id, rule_id, number, code, reason if code == STATUS_FAILED else None))
        for task_id, rule_id, number, code, reason in parsed:
            self.queue.finish(task_id, code == STATUS_COMPLETE, worker_id)
            self.reporter.add(rule_id, number, code, reason)


def _worker_state(slot: dict, record) -> dict:
    holding = list(record.holding) if record is not None else []
    if not slot["alive"]:
        state = "restarting"
    elif record is None:
        state = "starting"
    else:
        state = "busy" if holding else "idle"
    return {"slot": slot["slot"], "pid": slot["pid"], "workerID": record.worker_id if record else None,
            "state": state, "task": holding[0] if holding else None, "tasksHeld": len(holding),
            "tasksDone": record.done if record else 0, "errors": record.errors if record else 0,
            "restarts": slot["restarts"]}


class NodeApp:
    """The HTTP endpoints of one node server."""

    def __init__(self, node: NodeServer) -> None:
        self.node = node

    def app(self) -> JSONApp:
        return JSONApp({"node/tasks": self.tasks, "node/handin": self.handin,
                        "node/status": self.status, "node/config": self.config})

    async def tasks(self, request: Request, body: bytes) -> dict:
        worker_id = param(request, "workerID", str, "")
        num_want = param(request, "numWant", int, 50)
        if num_want < 1:
            raise HTTPError(400, f"numWant must be at least 1, not {num_want}")
        tasks = await self.node.queue.take(worker_id, num_want, self.node.worker_get_timeout)
        return {"ok": True, "result": tasks}

    def handin(self, request: Request, body: bytes) -> dict:
        worker_id = request.query.get("workerID")
        if "taskID" in request.query:
            self.node.hand_in([(param(request, "taskID"), param(request, "status"), None)], worker_id)
            return {"ok": True}
        items = json_body(body)
        if not isinstance(items, list):
            raise HTTPError(400, "hand in with ?taskID=&status= or a JSON list of {taskID, status}")
        parsed = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("taskID"), str):
                raise HTTPError(400, f"each hand-in needs a taskID string and a status: {item!r}")
            reason = item.get("reason")
            parsed.append((item["taskID"], str(item.get("status")), str(reason) if reason else None))
        self.node.hand_in(parsed, worker_id)
        return {"ok": True}

    def status(self, request: Request, body: bytes) -> dict:
        return self.node.status()

    def config(self, request: Request, body: bytes) -> dict:
        return self.node.config_document()
