"""The bidding loop: keep the local queue filled with tasks won from the rule server (§8.2).

Each round reads the rule server's adverts, rates the advertised tasks this node does not
already hold (:func:`~pyme_desk.node.locality.task_cost`) and bids on up to ``want`` of them:
the local ones (cost <= 0.99) first; only when there are none, and non-local work is allowed
(``rulenodeserver-nonlocal``), on the others.  Local and non-local tasks never share a bid
request, so local bids stay below the rule server's buy-now threshold and are awarded at once.
Won tasks are filled in from their template and queued oldest first.

A round runs as soon as the queue has dropped below half of ``capacity``, else every
``poll_interval`` seconds; while the rule server is unreachable the loop backs off (up to 2 s)
and the link looks for it again.
"""
from __future__ import annotations

import logging
import random
import threading
from typing import Any

from pyme_desk.node.locality import Locality, is_local, task_cost
from pyme_desk.node.ruleserver_client import RuleServerLink, RuleServerRefused, RuleServerUnavailable
from pyme_desk.node.taskqueue import TaskQueue
from pyme_desk.node.tasks import INVALID_TASK_TYPE
from pyme_desk.node.templates import TemplateError, fill_template, task_key

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 2.0
#: Bids are drawn from the oldest SPREAD x want candidates (see :func:`choose_bids`).
SPREAD = 2
#: Wait before the next round when bids won nothing (others won them, or the adverts lagged).
RETRY_S = 0.1


def invalid_task(rule_id: str, task_id: int, error: str) -> dict:
    """A stand-in for a task whose template cannot be filled in: a worker fails it, with ``error``
    in the rule's log, so the rule still finishes."""
    return {"id": task_key(rule_id, task_id), "type": INVALID_TASK_TYPE, "error": error}


def _inputs(advert: dict, task_id: int) -> dict | None:
    inputs = advert.get("inputsByTask")
    if not isinstance(inputs, dict):
        return None
    value = inputs.get(str(task_id))
    return value if isinstance(value, dict) else None


def make_task(template: str, rule_id: str, task_id: int, inputs: dict | None) -> dict:
    """The task description for one awarded task (an invalid-task stand-in if it cannot be made)."""
    try:
        task = fill_template(template, rule_id, task_id, inputs)
    except TemplateError as e:
        return invalid_task(rule_id, task_id, str(e))
    task["id"] = task_key(rule_id, task_id)  # what the hand-in maps back with, whatever the template says
    return task


def choose_bids(adverts: Any, want: int, locality: Locality, held: TaskQueue, allow_nonlocal: bool,
                rng: random.Random | None = None) -> list[dict]:
    """The bids for one round: ``[{"ruleID", "taskIDs", "costs"}]``, local tasks only when
    there are any, else (if allowed) non-local ones; at most ``want`` tasks in all.

    Without ``rng`` these are the oldest ``want`` candidates.  With it, ``want`` are drawn from
    the oldest ``SPREAD * want``: nodes with the same view of the adverts then bid on different
    tasks instead of racing for the same ones (where the fastest node would win every time).
    """
    window = want * SPREAD if rng is not None else want
    local: list[tuple[str, int, float]] = []
    remote: list[tuple[str, int, float]] = []
    for advert in adverts if isinstance(adverts, list) else ():
        if len(local) >= window:
            break
        if not isinstance(advert, dict):
            continue
        rule_id, template = advert.get("ruleID"), advert.get("taskTemplate")
        ids = advert.get("availableTaskIDs")
        if not isinstance(rule_id, str) or not isinstance(template, str) or not isinstance(ids, list):
            continue
        for task_id in ids:
            if len(local) >= window:
                break
            if not isinstance(task_id, int) or held.known(task_key(rule_id, task_id)):
                continue
            try:
                cost = task_cost(fill_template(template, rule_id, task_id, _inputs(advert, task_id)), locality)
            except TemplateError:
                cost = 1.0  # still bid, so a worker can fail it with a reason the user sees
            if is_local(cost):
                local.append((rule_id, task_id, cost))
            elif len(remote) < window:
                remote.append((rule_id, task_id, cost))
    chosen = local if local else (remote if allow_nonlocal else [])
    if len(chosen) > want:
        picked = sorted(rng.sample(range(len(chosen)), want)) if rng is not None else range(want)
        chosen = [chosen[i] for i in picked]
    bids: dict[str, dict] = {}
    for rule_id, task_id, cost in chosen:
        bid = bids.setdefault(rule_id, {"ruleID": rule_id, "taskIDs": [], "costs": []})
        bid["taskIDs"].append(task_id)
        bid["costs"].append(cost)
    return list(bids.values())


class Bidder:
    """Runs the bidding loop on its own thread; see the module docstring."""

    def __init__(self, link: RuleServerLink, queue: TaskQueue, locality: Locality, *, capacity: int,
                 allow_nonlocal: bool = True, poll_interval: float = 0.1) -> None:
        self.link = link
        self.queue = queue
        self.locality = locality
        self.capacity = max(1, capacity)
        self.allow_nonlocal = allow_nonlocal
        self.poll_interval = poll_interval
        self.won = 0
        self.rounds = 0
        self._rng = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="node-bidder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop bidding; a round in progress finishes (its tasks are queued)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self.queue.wait_for_room(max(1, self.capacity // 2), self.poll_interval)
            if self._stop.is_set():
                break
            want = self.capacity - self.queue.queued()
            if want <= 0:
                continue
            try:
                won: int | None = self.round(want)
                backoff = 0.0
            except RuleServerUnavailable as e:
                log.debug("bidding paused: %s", e)
                backoff = min(MAX_BACKOFF_S, max(0.1, 2 * backoff))
                self._stop.wait(backoff)
                continue
            except RuleServerRefused as e:
                log.warning("%s", e)
                won = None
            except Exception:  # never let one bad advert end the node's bidding
                log.exception("bidding round failed")
                won = None
            if not won:
                self._stop.wait(self.poll_interval if won is None else RETRY_S)

    def round(self, want: int) -> int | None:
        """One advert → bid → queue round; returns the number of tasks won (None: nothing to bid on)."""
        adverts = self.link.call("task_advertisements")
        bids = choose_bids(adverts, want, self.locality, self.queue, self.allow_nonlocal, self._rng)
        self.rounds += 1
        if not bids:
            return None
        awards = self.link.call("bid_on_tasks", bids)
        by_rule = {a["ruleID"]: a for a in adverts if isinstance(a, dict) and "ruleID" in a}
        tasks = []
        asked = {(b["ruleID"], i) for b in bids for i in b["taskIDs"]}
        for award in awards if isinstance(awards, list) else ():
            if not isinstance(award, dict):
                continue
            rule_id, template = award.get("ruleID"), award.get("template")
            if not isinstance(rule_id, str) or not isinstance(template, str) or not template:
                continue
            advert = by_rule.get(rule_id, {})
            for task_id in award.get("taskIDs") or ():
                tasks.append(make_task(template, rule_id, int(task_id), _inputs(advert, int(task_id))))
                asked.discard((rule_id, int(task_id)))
        self.queue.note_lost(task_key(r, i) for r, i in asked)
        added = self.queue.put(tasks)
        self.won += added
        return added
