"""The cluster of one run by the :class:`~pyme_desk.supervisor.Supervisor`, as a service control.

:class:`SupervisedCluster` adapts the supervisor's :class:`~pyme_desk.supervisor.ClusterSnapshot`
to the :class:`~pyme_desk.model.services.ServiceSnapshot` rows the Services panel shows.
"""
from __future__ import annotations

import time

from pyme_desk.model.services import ServiceSnapshot

#: How long start_all waits for every service to answer its probe (s).
READY_TIMEOUT_S = 60.0


class SupervisedCluster:
    """A :class:`~pyme_desk.model.services.ServiceControl` over a (not yet started) supervisor."""

    def __init__(self, supervisor, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.supervisor = supervisor
        self.ready_timeout = ready_timeout

    def start_all(self) -> bool:
        """Start the supervisor and wait until its services are ready (False: one failed or time ran out)."""
        self.supervisor.start()
        return self.supervisor.wait_ready(self.ready_timeout)

    def snapshot(self) -> tuple[ServiceSnapshot, ...]:
        now = time.time()
        rows = []
        for s in self.supervisor.snapshot().services:
            running = s.state.running
            rows.append(ServiceSnapshot(
                name=s.name, state=s.state.value, pid=s.pid, url=s.url or "",
                uptime_s=max(now - s.since, 0.0) if running and s.since else None,
                restarts=s.restarts, message=s.reason, log_tail=s.log_tail))
        return tuple(rows)

    def url(self, name: str) -> str:
        return self.supervisor.snapshot().service(name).url or ""

    def start(self, name: str) -> None:
        self.supervisor.start_service(name)

    def stop(self, name: str) -> None:
        self.supervisor.stop_service(name)

    def restart(self, name: str) -> None:
        self.supervisor.restart_service(name)

    def shutdown(self) -> None:
        self.supervisor.stop()
