"""Run and watch the node's worker processes.

Each worker is ``<this python> -m pyme_desk.node.worker --node-url <url>`` (no shell), started
with a pipe on its standard input as its lifeline (:mod:`pyme_desk.lifeline`).  Closing that
pipe is the stop message on every platform (there is no SIGHUP on Windows): the worker finishes
its current task, hands in and exits.  The same pipe is how a worker notices that the node
server died, even by kill -9, because the operating system closes it.  Workers that do not exit within the grace time are
killed.  A worker that dies while the node runs is started again (with a growing delay if it
keeps dying at once) and ``on_exit(pid)`` lets the node requeue the tasks it held.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyme_desk
from pyme_desk.lifeline import LIFELINE_ENV

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after starting counts as crash-looping.
QUICK_DEATH_S = 2.0
MAX_RESTART_DELAY_S = 10.0


@dataclass
class WorkerSlot:
    """One worker position: the process running it now, and its history."""

    index: int
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    restart_at: float = 0.0
    last_exit_code: int | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def worker_command(node_url: str, slot: int, log_dir: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "pyme_desk.node.worker", "--node-url", node_url, "--slot", str(slot)]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir)]
    return cmd


def _worker_environment() -> dict[str, str]:
    """Our environment, with this copy of pyme_desk importable whatever the working directory,
    and stdin as the worker's lifeline."""
    env = dict(os.environ, **{LIFELINE_ENV: "1"})
    package_parent = str(Path(pyme_desk.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    return env


class WorkerPool:
    """``count`` worker processes for the node server at ``node_url``; see the module docstring."""

    def __init__(self, count: int, node_url: str, *, log_dir: Path | None = None,
                 on_exit: Callable[[int], None] | None = None, check_interval: float = 0.2) -> None:
        if count < 1:
            raise ValueError("a node needs at least one worker")
        self.node_url = node_url
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.check_interval = check_interval
        self.slots = [WorkerSlot(i) for i in range(count)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            for slot in self.slots:
                self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="node-workers", daemon=True)
        self._thread.start()

    def _spawn(self, slot: WorkerSlot) -> None:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0
        slot.process = subprocess.Popen(worker_command(self.node_url, slot.index, self.log_dir),
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        env=_worker_environment(), creationflags=flags)
        slot.started_at = time.monotonic()
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval):
            for slot in self.slots:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._check(slot)

    def _check(self, slot: WorkerSlot) -> None:
        now = time.monotonic()
        proc = slot.process
        if proc is not None:
            code = proc.poll()
            if code is None:
                return
            slot.last_exit_code = code
            slot.process = None
            quick = now - slot.started_at < QUICK_DEATH_S
            slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
            delay = min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (slot.quick_deaths - 1)) if quick else 0.0
            slot.restart_at = now + delay
            log.warning("worker %d (pid %d) exited with code %s; restarting it%s", slot.index, proc.pid,
                        code, f" in {delay:.1f} s" if delay else "")
            if self.on_exit is not None:
                try:
                    self.on_exit(proc.pid)
                except Exception:
                    log.exception("could not requeue the tasks of worker pid %d", proc.pid)
        if slot.process is None and now >= slot.restart_at:
            slot.restarts += 1
            try:
                self._spawn(slot)
            except OSError as e:
                log.error("cannot start worker %d: %s", slot.index, e)
                slot.restart_at = now + MAX_RESTART_DELAY_S

    def request_stop(self) -> None:
        """Stop restarting workers and ask each to finish its task and exit (closes its stdin)."""
        with self._lock:
            self._stop.set()
            for slot in self.slots:
                if slot.process is not None and slot.process.stdin is not None:
                    try:
                        slot.process.stdin.close()
                    except OSError:
                        pass

    def stop(self, grace: float = 10.0) -> None:
        """Ask the workers to stop, wait up to ``grace`` s for them, then kill the rest."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + grace
        for slot in self.slots:
            proc = slot.process
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d (pid %d) did not stop within %.0f s; killing it",
                            slot.index, proc.pid, grace)
                proc.kill()
                proc.wait()

    def snapshot(self) -> list[dict]:
        """Per slot: index, pid, alive, restarts, last exit code."""
        with self._lock:
            return [{"slot": s.index, "pid": s.pid, "alive": s.alive, "restarts": s.restarts,
                     "lastExitCode": s.last_exit_code} for s in self.slots]
