"""A worker process: take tasks from the node server, run them, hand them in.

``python -m pyme_desk.node.worker --node-url http://127.0.0.1:15347/`` speaks the node server's
worker API (protocol.md §8.3), so it also works with PYME's node server for the task types it
knows.  It asks for as many tasks as it expects to finish in about :data:`BATCH_SECONDS` (at
least 1, at most 50), runs them one after the other, and hands the batch in with one request
(a JSON list on ``/node/handin``; one request per task, PYME's form, when the node server does
not take lists).

Stopping: a node server starts its workers with a lifeline on standard input
(:mod:`pyme_desk.lifeline`): the end of input is the stop message, after which the worker
finishes its current task, hands in and exits.  The node server closes the pipe to stop us, and
the operating system closes it when the node server dies.  Started by hand, a worker stops on
Ctrl-C/SIGTERM, or once the node server has not answered for :data:`NODE_GONE_S` seconds.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import requests

from pyme_desk.lifeline import exit_with_stdin
from pyme_desk.names import computer_name
from pyme_desk.node.tasks import (TaskContext, failure_report, file_failure_report, load_task_types,
                                  run_task)

log = logging.getLogger("pyme_desk.node.worker")

BATCH_SECONDS = 0.2
MAX_BATCH = 50
#: A worker whose node server has not answered for this long exits.
NODE_GONE_S = 10.0


class Worker:
    """The fetch → run → hand-in loop of one worker process."""

    def __init__(self, node_url: str, stop: threading.Event) -> None:
        self.node_url = node_url if node_url.endswith("/") else node_url + "/"
        self.stop = stop
        self.worker_id = f"{computer_name()}_{os.getpid()}"
        self.session = requests.Session()
        self.types = load_task_types()
        self.context: TaskContext | None = None
        self.get_timeout = 60.0
        self.num_want = 1
        self._mean_task_s: float | None = None
        self._batch_handin = True
        self._unanswered_since: float | None = None

    def run(self) -> int:
        try:
            if not self._configure():
                return 1
            while not self.stop.is_set():
                tasks = self._fetch()
                if tasks is None:
                    if self._node_gone():
                        log.error("the node server at %s has not answered for %.0f s; exiting",
                                  self.node_url, NODE_GONE_S)
                        return 1
                    self.stop.wait(0.5)
                    continue
                results = []
                for task in tasks:
                    results.append(self._run_one(task))
                    if self.stop.is_set():
                        break
                self._hand_in(results)
            return 0
        finally:
            if self.context is not None:
                self.context.close()
            self.session.close()

    # -- talking to the node server --------------------------------------------------------------

    def _request(self, endpoint: str, *, timeout: float, **kwargs) -> requests.Response | None:
        try:
            r = self.session.post(self.node_url + endpoint, timeout=(3.0, timeout), **kwargs)
        except requests.RequestException as e:
            log.debug("node server %s: %s", endpoint, e)
            if self._unanswered_since is None:
                self._unanswered_since = time.monotonic()
            return None
        self._unanswered_since = None
        return r

    def _node_gone(self) -> bool:
        return (self._unanswered_since is not None
                and time.monotonic() - self._unanswered_since > NODE_GONE_S)

    def _configure(self) -> bool:
        """Read the node's settings (its name, cluster, data servers, data root)."""
        while not self.stop.is_set():
            r = self._request("node/config", timeout=10.0)
            if r is not None and r.status_code == 200:
                doc = r.json()
                root = doc.get("dataRoot")
                self.context = TaskContext(node_name=str(doc.get("nodeID") or computer_name()),
                                           worker_id=self.worker_id,
                                           server_filter=str(doc.get("serverFilter") or ""),
                                           servers=doc.get("servers") or None,
                                           data_root=Path(root) if root else None)
                self.get_timeout = float(doc.get("workerGetTimeout") or self.get_timeout)
                return True
            if r is not None:  # a node server without /node/config (PYME's): defaults
                self.context = TaskContext(node_name=computer_name(), worker_id=self.worker_id,
                                           server_filter=computer_name())
                return True
            if self._node_gone():
                log.error("cannot reach the node server at %s", self.node_url)
                return False
            self.stop.wait(0.2)
        return False

    def _fetch(self) -> list[dict] | None:
        r = self._request("node/tasks", timeout=self.get_timeout + 15,
                          params={"workerID": self.worker_id, "numWant": self.num_want})
        if r is None or r.status_code != 200:
            return None
        try:
            result = r.json().get("result")
        except (ValueError, AttributeError):
            return None
        return [t for t in result if isinstance(t, dict)] if isinstance(result, list) else []

    def _hand_in(self, results: list[tuple[str, str, str | None]]) -> None:
        if not results:
            return
        if self._batch_handin:
            body = [{"taskID": t, "status": s, **({"reason": why} if why else {})} for t, s, why in results]
            r = self._request("node/handin", timeout=30.0, data=json.dumps(body),
                              headers={"Content-Type": "application/json"})
            if r is not None and r.status_code == 200:
                return
            if r is not None and r.status_code == 400:
                self._batch_handin = False  # a node server that wants one task per request
        for task_id, status, _ in results:
            self._request("node/handin", timeout=30.0, params={"taskID": task_id, "status": status})

    # -- running ---------------------------------------------------------------------------------

    def _run_one(self, task: dict) -> tuple[str, str, str | None]:
        started = time.perf_counter()
        task_id = str(task.get("id"))
        try:
            run_task(task, self.context, self.types)
            outcome: tuple[str, str, str | None] = (task_id, "success", None)
        except Exception as e:
            log.info("task %s failed: %s", task_id, e)
            report = failure_report(task, e, self.context.node_name)
            file_failure_report(task, report, self.context)
            outcome = (task_id, "failure", str(e)[:500] or type(e).__name__)
        self._learn(time.perf_counter() - started)
        return outcome

    def _learn(self, seconds: float) -> None:
        """Adapt the batch size so one batch takes about BATCH_SECONDS."""
        mean = seconds if self._mean_task_s is None else 0.8 * self._mean_task_s + 0.2 * seconds
        self._mean_task_s = mean
        self.num_want = max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(mean, 1e-6))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyme_desk.node.worker",
                                     description="run analysis tasks for a node server")
    parser.add_argument("--node-url", required=True, help="the node server, e.g. http://127.0.0.1:15347/")
    parser.add_argument("--slot", type=int, default=None, help="worker number, for the log file name")
    parser.add_argument("--log-dir", type=Path, help="write the log to <log-dir>/worker-<slot>.log too")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"%(asctime)s %(levelname)s worker {os.getpid()}: %(message)s")
    if args.log_dir is not None:
        from pyme_desk.logs import configure_service_logging
        name = f"worker-{args.slot}" if args.slot is not None else f"worker-{os.getpid()}"
        configure_service_logging(name, args.log_dir, verbose=args.verbose)

    stop = threading.Event()
    if exit_with_stdin(stop.set):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the node server, which stops us
    else:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return Worker(args.node_url, stop).run()


if __name__ == "__main__":
    sys.exit(main())
