"""The node's local task queue: tasks won from the rule server, waiting for a worker, and the
tasks each worker holds until it hands them in.

Bidding and supervision run on threads; workers are served from the HTTP event loop, where
:meth:`TaskQueue.take` waits for tasks without blocking the loop (a future per waiting request,
woken through ``call_soon_threadsafe``).  Tasks are handed out in the order they were won, so a
rule's oldest tasks run first.  When a worker dies, the tasks it held go back to the front of the
queue and run again on another worker (counted in :attr:`TaskQueue.requeued`).  When the node
stops, :meth:`TaskQueue.withdraw` takes out the tasks no worker will run, to give them back.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

#: The most tasks one worker request may take.
MAX_TAKE = 1000
#: How long a task handed in, or lost to another node's bid, is not bid on again: the rule
#: server's adverts may lag behind.
RECENT_S = 2.0


@dataclass
class WorkerRecord:
    """What one worker (by its ``workerID``) holds and has done."""

    worker_id: str
    holding: dict[str, float] = field(default_factory=dict)  # task id -> when it was handed out
    done: int = 0
    errors: int = 0
    last_seen: float = 0.0

    @property
    def pid(self) -> int | None:
        """The process ID in a PYME-style worker ID (``<computer>_<pid>``), if there is one."""
        _, _, tail = self.worker_id.rpartition("_")
        return int(tail) if tail.isdigit() else None


class TaskQueue:
    """Tasks waiting for a worker, and the tasks each worker holds; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queued: deque[dict] = deque()
        self._keys: set[str] = set()  # ids queued or held by a worker
        self._recent: deque[tuple[float, str]] = deque()  # (when, id) of tasks handed in or lost lately
        self._recent_keys: set[str] = set()
        self._given: dict[str, tuple[str, dict]] = {}  # id -> (worker id, task) while a worker holds it
        self._workers: dict[str, WorkerRecord] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future] = []
        self._closed = False
        self.requeued = 0
        self.completed = 0
        self.failed = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve :meth:`take` from ``loop``."""
        self._loop = loop

    # -- filling --------------------------------------------------------------------------------

    def put(self, tasks: Iterable[dict], *, front: bool = False) -> int:
        """Queue tasks (each with an ``id``) not already queued or held; returns how many."""
        with self._lock:
            new = [t for t in tasks if t["id"] not in self._keys]
            self._keys.update(t["id"] for t in new)
            if front:
                self._queued.extendleft(reversed(new))
            else:
                self._queued.extend(new)
            self._changed.notify_all()
        if new:
            self._wake_threadsafe()
        return len(new)

    def known(self, task_id: str) -> bool:
        """True while the task is queued or held by a worker, or was lately handed in or lost to
        another node: not worth bidding on."""
        if task_id in self._keys:
            return True
        if task_id not in self._recent_keys:
            return False
        with self._lock:  # only recent for RECENT_S, even when nothing new is remembered meanwhile
            self._forget_old(time.monotonic())
            return task_id in self._recent_keys

    def note_lost(self, task_ids: Iterable[str]) -> None:
        """Tasks this node bid on and did not win: another node has them."""
        with self._lock:
            for task_id in task_ids:
                self._remember(task_id)

    def queued(self) -> int:
        return len(self._queued)

    def in_flight(self) -> int:
        return len(self._given)

    def wait_for_room(self, below: int, timeout: float) -> bool:
        """Block until fewer than ``below`` tasks are queued (or ``timeout`` s); True if so."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._queued) < below or self._closed, timeout)

    def wait_until_drained(self, timeout: float) -> bool:
        """Block until nothing is queued or held by a worker (or ``timeout`` s); True if so."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queued and not self._given, timeout)

    # -- serving workers (event loop) -----------------------------------------------------------

    async def take(self, worker_id: str, num_want: int, timeout: float) -> list[dict]:
        """Up to ``num_want`` tasks for a worker: waits up to ``timeout`` s for the first, then
        takes only what is there, at most the first task's ``optimal-chunk-size``."""
        num_want = max(1, min(int(num_want), MAX_TAKE))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tasks = self._take_now(worker_id, num_want)
            remaining = deadline - loop.time()
            if tasks or self._closed or remaining <= 0:
                return tasks
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _take_now(self, worker_id: str, num_want: int) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            record = self._record(worker_id, now)
            if not self._queued or self._closed:
                return []
            chunk = self._queued[0].get("optimal-chunk-size")
            if isinstance(chunk, int) and chunk > 0:
                num_want = min(num_want, chunk)
            tasks = [self._queued.popleft() for _ in range(min(num_want, len(self._queued)))]
            for task in tasks:
                self._given[task["id"]] = (worker_id, task)
                record.holding[task["id"]] = now
            self._changed.notify_all()
            return tasks

    def _record(self, worker_id: str, now: float) -> WorkerRecord:
        record = self._workers.get(worker_id)
        if record is None:
            record = self._workers[worker_id] = WorkerRecord(worker_id)
        record.last_seen = now
        return record

    def finish(self, task_id: str, success: bool, worker_id: str | None = None) -> None:
        """A worker handed the task in: it is no longer held; the worker's counts go up."""
        with self._lock:
            entry = self._given.pop(task_id, None)
            if entry is not None:  # (a task requeued meanwhile stays queued: it runs again)
                self._keys.discard(task_id)
            owner = entry[0] if entry is not None else worker_id
            self._remember(task_id)
            if success:
                self.completed += 1
            else:
                self.failed += 1
            if owner is not None:
                record = self._record(owner, time.monotonic())
                record.holding.pop(task_id, None)
                if success:
                    record.done += 1
                else:
                    record.errors += 1
            self._changed.notify_all()

    def _remember(self, task_id: str) -> None:
        now = time.monotonic()
        self._forget_old(now)
        self._recent.append((now, task_id))
        self._recent_keys.add(task_id)

    def _forget_old(self, now: float) -> None:
        while self._recent and now - self._recent[0][0] > RECENT_S:
            self._recent_keys.discard(self._recent.popleft()[1])

    def requeue_worker(self, pid: int) -> int:
        """Put the tasks held by the worker with process ID ``pid`` back at the front of the queue."""
        with self._lock:
            lost: list[dict] = []
            for record in self._workers.values():
                if record.pid != pid:
                    continue
                for task_id in list(record.holding):
                    _, task = self._given.pop(task_id, (None, None))
                    if task is not None:
                        lost.append(task)
                record.holding.clear()
            self._queued.extendleft(reversed(lost))
            self.requeued += len(lost)
            self._changed.notify_all()
        if lost:
            self._wake_threadsafe()
        return len(lost)

    def withdraw(self, *, held_too: bool = False) -> list[str]:
        """Take every queued task out of the queue (and, with ``held_too``, forget the tasks
        workers hold but have not handed in: call that only once those workers have exited);
        returns their IDs."""
        with self._lock:
            tasks = list(self._queued)
            self._queued.clear()
            if held_too:
                tasks += [task for _, task in self._given.values()]
                self._given.clear()
                for record in self._workers.values():
                    record.holding.clear()
            ids = [task["id"] for task in tasks]
            self._keys.difference_update(ids)
            self._changed.notify_all()
        return ids

    def close(self) -> None:
        """Stop handing out tasks; waiting requests return empty at once."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        self._wake_threadsafe()

    def workers(self) -> list[WorkerRecord]:
        """A snapshot of every worker seen so far."""
        with self._lock:
            return [WorkerRecord(r.worker_id, dict(r.holding), r.done, r.errors, r.last_seen)
                    for r in self._workers.values()]

    # -- waking waiting requests -----------------------------------------------------------------

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop has closed: nobody is waiting
            pass

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
