"""A daemon thread that reads something every ``interval`` seconds and hands the result on.

The reading function may block (HTTP, disk); the callback runs on the poller's thread and
receives a :class:`PollResult` holding either the value or a readable error.  Because one
read finishes before the next starts, a slow source slows its own poller and nothing else.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pyme_desk.model.errors import describe

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class PollResult(Generic[T]):
    """One poll: ``value`` or ``error`` (a one-line message), and when it was taken."""

    value: T | None
    error: str | None
    time: float


class Poller:
    """Calls ``read()`` now and then every ``interval`` seconds until :meth:`stop`.

    :meth:`poke` asks for a read at once (after a user action, say).
    """

    def __init__(self, read: Callable[[], Any], on_result: Callable[[PollResult], None],
                 interval: float = 1.0, name: str = "poller") -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self._read = read
        self._on_result = on_result
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Poller":
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"pyme-desk-{self.name}", daemon=True)
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; waits up to ``timeout`` s for a read in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll_once(self) -> PollResult:
        """One read, its failure turned into a readable error."""
        try:
            return PollResult(self._read(), None, time.time())
        except Exception as exc:  # any failure of a source is shown, never raised into a GUI
            log.debug("%s: read failed", self.name, exc_info=True)
            return PollResult(None, describe(exc), time.time())

    def _run(self) -> None:
        while not self._stop.is_set():
            result = self.poll_once()
            if self._stop.is_set():
                break
            try:
                self._on_result(result)
            except Exception:  # a broken receiver must not end polling
                log.exception("%s: result handler failed", self.name)
            self._wake.wait(self.interval)
            self._wake.clear()
