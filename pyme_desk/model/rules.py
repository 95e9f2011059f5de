"""Analysis progress as the rule server reports it (``/distributor/queues``, protocol.md §7)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import requests


@dataclass(frozen=True)
class RuleProgress:
    """One rule's task counts."""

    rule_id: str
    posted: int
    running: int
    completed: int
    failed: int
    active: bool
    finished: bool

    @property
    def fraction(self) -> float:
        """Share of posted tasks that ended (completed or failed), 0..1."""
        return (self.completed + self.failed) / self.posted if self.posted else 0.0


def parse_queues(doc: Any) -> tuple[RuleProgress, ...]:
    """The rules in a ``/distributor/queues`` answer, in the server's order; ValueError if malformed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("result"), dict):
        raise ValueError("the rule server's queue report is not {'ok': ..., 'result': {...}}")
    rules = []
    for rule_id, info in doc["result"].items():
        if not isinstance(info, dict):
            raise ValueError(f"queue report for rule {rule_id!r} is not an object")
        rules.append(RuleProgress(
            rule_id=str(rule_id), posted=int(info.get("tasksPosted", 0)),
            running=int(info.get("tasksRunning", 0)), completed=int(info.get("tasksCompleted", 0)),
            failed=int(info.get("tasksFailed", 0)), active=_truthy(info.get("active", True)),
            finished=_truthy(info.get("finished", False))))
    return tuple(rules)


def _truthy(value: Any) -> bool:
    # PYME sends some booleans as the strings "True"/"False".
    return value.lower() == "true" if isinstance(value, str) else bool(value)


class RulesModel:
    """Reads a rule server's progress report; :meth:`read` is a poller's read function.

    ``url`` returns the rule server's base URL, or "" while there is none (no rules then).
    """

    def __init__(self, url: Callable[[], str], timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = requests.Session()

    def read(self) -> tuple[RuleProgress, ...]:
        base = self.url()
        if not base:
            return ()
        r = self._session.get(base.rstrip("/") + "/distributor/queues", timeout=self.timeout)
        r.raise_for_status()
        return parse_queues(r.json())

    def close(self) -> None:
        self._session.close()
