"""Hand finished tasks in to the rule server in batches, and heart-beat this node's lease.

Workers' hand-ins are collected per rule and sent as one ``/handin`` request (protocol.md §8.2:
``[{"ruleID", "taskIDs", "status"}]`` with 3 = complete, 4 = failed, plus the pyme-desk
``reasons`` of failures) every :attr:`HandinReporter.flush_interval` seconds.  A batch that does
not reach the rule server is kept and sent again with growing back-off until it is accepted
(PYME drops it).  Only a 4xx answer, which no retry can change, drops a batch, with an error
in the log.

The same thread calls ``/node_heartbeat`` every ``heartbeatInterval`` seconds (as the rule
server asks) so the tasks this node holds stay leased to it; not to a rule server that keeps no
leases (PYME's, see :attr:`RuleServerLink.leases`).

:func:`return_tasks` gives a stopping node's unstarted tasks back (``/return_tasks``, pyme-desk's
rule server only), so they are handed out again at once and no retry is counted against them.
"""
from __future__ import annotations

import logging
import threading
import time

from pyme_desk.node.ruleserver_client import RuleServerLink, RuleServerRefused, RuleServerUnavailable
from pyme_desk.node.templates import split_task_key

log = logging.getLogger(__name__)

STATUS_COMPLETE = 3
STATUS_FAILED = 4
DEFAULT_HEARTBEAT_S = 1.0
MAX_BACKOFF_S = 5.0


class HandinReporter:
    """Batches hand-ins to the rule server and keeps this node's lease alive; see the module docstring."""

    def __init__(self, link: RuleServerLink, *, flush_interval: float = 0.02, max_batch: int = 20000) -> None:
        self.link = link
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.sent = 0
        self._lock = threading.Lock()
        self._pending: dict[str, dict[int, tuple[int, str | None]]] = {}
        self._count = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_delay = 0.0

    # -- collecting ------------------------------------------------------------------------------

    def add(self, rule_id: str, task_id: int, status: int, reason: str | None = None) -> None:
        """Queue one hand-in (a later one for the same task replaces it)."""
        with self._lock:
            tasks = self._pending.setdefault(rule_id, {})
            if task_id not in tasks:
                self._count += 1
            tasks[task_id] = (status, reason)
            if self._count >= self.max_batch:
                self._wake.set()

    def pending(self) -> int:
        """Hand-ins not yet accepted by the rule server."""
        return self._count

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="node-handins", daemon=True)
        self._thread.start()

    def stop(self, flush_timeout: float = 5.0) -> int:
        """Stop the thread after trying, for up to ``flush_timeout`` s, to send what is pending;
        returns the number of hand-ins that could not be sent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + flush_timeout
        while self._count and time.monotonic() < deadline:
            if not self._flush():
                time.sleep(0.2)
        if self._count:
            log.warning("%d hand-ins could not be delivered to the rule server before shutdown; "
                        "the rule server will run those tasks again", self._count)
        return self._count

    def _run(self) -> None:
        retry_at = 0.0
        next_heartbeat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_heartbeat:
                try:
                    self._heartbeat()
                except Exception:
                    log.exception("heartbeat failed")
                next_heartbeat = now + (self.link.heartbeat_interval or DEFAULT_HEARTBEAT_S)
            if self._count and now >= retry_at:
                try:
                    sent = self._flush()
                except Exception:  # a bug must not end hand-ins for good: log it and retry later
                    log.exception("hand-in failed")
                    sent = False
                if sent:
                    self._retry_delay = 0.0
                else:
                    self._retry_delay = min(MAX_BACKOFF_S, max(0.2, 2 * self._retry_delay))
                    retry_at = now + self._retry_delay
            wait = min(self.flush_interval, max(0.0, next_heartbeat - time.monotonic()))
            if self._wake.wait(wait):
                self._wake.clear()

    # -- talking to the rule server ------------------------------------------------------------

    def _flush(self) -> bool:
        """Send one batch; True when the rule server took it (or refused it for good)."""
        with self._lock:
            batch: list[tuple[str, dict[int, tuple[int, str | None]]]] = []
            size = 0
            for rule_id, tasks in self._pending.items():
                if size >= self.max_batch:
                    break
                batch.append((rule_id, dict(tasks)))
                size += len(tasks)
        body = []
        for rule_id, tasks in batch:
            ids = sorted(tasks)
            entry = {"ruleID": rule_id, "taskIDs": ids, "status": [tasks[i][0] for i in ids]}
            if any(tasks[i][1] for i in ids):
                entry["reasons"] = [tasks[i][1] for i in ids]
            body.append(entry)
        try:
            answer = self.link.call("handin", body)
        except RuleServerUnavailable as e:
            log.debug("hand-in of %d tasks deferred: %s", size, e)
            return False
        except RuleServerRefused as e:
            log.error("the rule server refused a hand-in of %d tasks, which are dropped: %s", size, e)
            answer = None
        if isinstance(answer, dict) and str(answer.get("ok")) != "True" and answer.get("ok") is not True:
            log.warning("rule server on hand-in: %s", answer.get("error", answer))
        self._forget(batch)
        self.sent += size
        return True

    def _forget(self, batch: list[tuple[str, dict[int, tuple[int, str | None]]]]) -> None:
        """Drop the hand-ins that were sent, keeping any that changed meanwhile."""
        with self._lock:
            for rule_id, tasks in batch:
                pending = self._pending.get(rule_id)
                if pending is None:
                    continue
                for task_id, value in tasks.items():
                    if pending.get(task_id) == value:
                        del pending[task_id]
                        self._count -= 1
                if not pending:
                    del self._pending[rule_id]

    def _heartbeat(self) -> None:
        if not self.link.leases:
            return
        try:
            self.link.call("node_heartbeat", timeout=5.0)
        except RuleServerUnavailable:
            return
        except RuleServerRefused as e:
            log.warning("heartbeat refused: %s", e)


def return_tasks(link: RuleServerLink, task_ids: list[str], timeout: float = 5.0) -> int:
    """Give tasks (``<ruleID>~<n>``) this node won but will not run back to the rule server;
    returns how many it made available again.  A failure is logged: the tasks then come back
    when this node's lease lapses, as after a crash."""
    by_rule: dict[str, list[int]] = {}
    for key in task_ids:
        try:
            rule_id, number = split_task_key(key)
        except ValueError:
            continue
        by_rule.setdefault(rule_id, []).append(number)
    if not by_rule:
        return 0
    body = [{"ruleID": rule_id, "taskIDs": sorted(ids)} for rule_id, ids in by_rule.items()]
    try:
        answer = link.call("return_tasks", body, timeout=timeout)
    except (RuleServerUnavailable, RuleServerRefused) as e:
        log.warning("could not give %d unstarted tasks back to the rule server (%s); it hands them out "
                    "again once this node's lease lapses", len(task_ids), e)
        return 0
    returned = answer.get("returned", 0) if isinstance(answer, dict) else 0
    log.info("gave %s unstarted tasks back to the rule server (%s no longer ours)", returned,
             answer.get("ignored", 0) if isinstance(answer, dict) else "?")
    return int(returned) if isinstance(returned, int) else 0
