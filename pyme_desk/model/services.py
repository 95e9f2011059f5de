"""The services of the local cluster (and of attached nodes) as the GUI shows them.

:class:`ServiceSnapshot` is what a Services row shows.  A *service control* is anything with
``snapshot() -> tuple[ServiceSnapshot, ...]``, ``start(name)``, ``stop(name)``,
``restart(name)`` and ``shutdown()``; the supervisor provides one for the cluster of one.
:class:`InProcessCluster` is a small one that runs servers inside this process (a data server
by default); it stands in when no supervisor is available and is what GUI tests drive.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

STARTING, READY, DEGRADED, STOPPING, STOPPED, FAILED = (
    "starting", "ready", "degraded", "stopping", "stopped", "failed")
STATES = (STARTING, READY, DEGRADED, STOPPING, STOPPED, FAILED)
#: Log lines kept per service.
LOG_TAIL_LINES = 2000


@dataclass(frozen=True)
class ServiceSnapshot:
    """One managed service at one moment."""

    name: str
    state: str  # one of STATES
    pid: int | None = None
    url: str = ""
    uptime_s: float | None = None
    restarts: int = 0
    message: str = ""  # why it failed or is degraded
    node: str = "local"
    log_tail: tuple[str, ...] = ()
    node_url: str = ""  # the node agent running it ("" for the desk's own cluster)


class ServiceControl(Protocol):
    def snapshot(self) -> tuple[ServiceSnapshot, ...]: ...
    def start(self, name: str) -> None: ...
    def stop(self, name: str) -> None: ...
    def restart(self, name: str) -> None: ...
    def shutdown(self) -> None: ...


class Server(Protocol):
    """What :class:`InProcessCluster` runs: a plain server object (see docs/architecture.md)."""

    url: str

    def start(self) -> object: ...
    def stop(self) -> None: ...


class _LogTail(logging.Handler):
    """Keeps the last lines logged under one logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a bad log record must not break the service
            self.handleError(record)


@dataclass
class _Managed:
    name: str
    factory: Callable[[], Server]
    logger: str
    tail: _LogTail
    server: Server | None = None
    state: str = STOPPED
    started_at: float | None = None
    restarts: int = 0
    message: str = ""


class InProcessCluster:
    """Servers run in this process, each started and stopped by name; a :class:`ServiceControl`.

    ``services`` maps a service name to ``(factory, logger name)``: the factory builds a fresh,
    unstarted server each time it is started; lines logged under the logger form its log tail.
    """

    def __init__(self, services: dict[str, tuple[Callable[[], Server], str]]) -> None:
        self._lock = threading.RLock()
        self._services: dict[str, _Managed] = {}
        for name, (factory, logger) in services.items():
            tail = _LogTail()
            log = logging.getLogger(logger)
            log.addHandler(tail)
            if log.getEffectiveLevel() > logging.INFO:
                log.setLevel(logging.INFO)
            self._services[name] = _Managed(name, factory, logger, tail)

    @classmethod
    def data_server(cls, root: Path, *, server_filter: str, port: int = 0,
                    advertise: str = "none", token: str | None = None) -> "InProcessCluster":
        """A cluster of one data server for ``root``."""
        def make() -> Server:
            from pyme_desk.storage.server import DataServer
            return DataServer(root, port=port, server_filter=server_filter, advertise=advertise,
                              token=token, status_interval=0.5)
        return cls({"dataserver": (make, "pyme_desk.storage")})

    def names(self) -> list[str]:
        return list(self._services)

    def url(self, name: str) -> str:
        with self._lock:
            server = self._get(name).server
            return server.url if server is not None else ""

    def start_all(self) -> None:
        for name in self._services:
            self.start(name)

    def start(self, name: str) -> None:
        with self._lock:
            managed = self._get(name)
            if managed.state in (READY, STARTING):
                return
            managed.state, managed.message = STARTING, ""
            try:
                server = managed.factory()
                server.start()
            except Exception as exc:
                from pyme_desk.model.errors import describe
                managed.state, managed.message, managed.server = FAILED, describe(exc), None
                managed.tail.lines.append(f"failed to start: {managed.message}")
                raise
            managed.server, managed.state, managed.started_at = server, READY, time.time()

    def stop(self, name: str) -> None:
        with self._lock:
            managed = self._get(name)
            if managed.server is None:
                managed.state = STOPPED
                return
            managed.state = STOPPING
            server, managed.server = managed.server, None
            try:
                server.stop()
            finally:
                managed.state, managed.started_at = STOPPED, None

    def restart(self, name: str) -> None:
        with self._lock:
            self.stop(name)
            self._get(name).restarts += 1
            self.start(name)

    def shutdown(self) -> None:
        """Stop every service, last started first."""
        for name in reversed(list(self._services)):
            try:
                self.stop(name)
            except Exception:  # keep stopping the others
                logging.getLogger(__name__).exception("stopping %s failed", name)
        for managed in self._services.values():
            logging.getLogger(managed.logger).removeHandler(managed.tail)

    def snapshot(self) -> tuple[ServiceSnapshot, ...]:
        now = time.time()
        with self._lock:
            return tuple(ServiceSnapshot(
                name=m.name, state=m.state, pid=os.getpid() if m.server is not None else None,
                url=m.server.url if m.server is not None else "",
                uptime_s=now - m.started_at if m.started_at else None, restarts=m.restarts,
                message=m.message, log_tail=tuple(m.tail.lines)) for m in self._services.values())

    def _get(self, name: str) -> _Managed:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service called {name!r}") from None
