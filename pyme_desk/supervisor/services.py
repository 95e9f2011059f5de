"""What a managed service is, the states it moves through, and the cluster-of-one service set.

A service is described by a :class:`ServiceSpec`: the arguments after ``python`` (usually
``-m pyme_desk <command> ...``), the HTTP path that answers once it is ready, and the services
it needs first.  Arguments are templates; the supervisor fills in, at each start:

``{port}``        0 the first time, afterwards the port the service had (so its URL survives a
                  restart); 0 again if that port could not be bound;
``{port_file}``   where the service writes ``{"url", "port", "pid"}`` once it listens;
``{log_dir}``     the cluster's log directory (for the service's own log file);
``{run_dir}``     the cluster's per-user state directory (journals and the like);
``{<service>}``   the URL of a dependency, e.g. ``{dataserver}``.

State chain of one service (shown as is in the GUI)::

    stopped ──start──► starting ──probe answers──► ready ◄──probe answers again──┐
       ▲                  │  ▲                       │                          │
       │                  │  └──crash: back-off──────┤──probe fails──► degraded ┘
       │                  │                          │                   │ (hung too long: restart)
       │                  └──timeout / refused / too many crashes──► failed
       └──────────── stopping ◄──stop (from any running state)

``unavailable`` marks a service whose module is not installed in this build; it never starts.
"""
from __future__ import annotations

import enum
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


class ServiceState(str, enum.Enum):
    """Where a managed service is in its life; see the module docstring for the chain."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"

    @property
    def running(self) -> bool:
        """True while a process is (meant to be) up: starting, ready or degraded."""
        return self in (ServiceState.STARTING, ServiceState.READY, ServiceState.DEGRADED)


@dataclass(frozen=True)
class ServiceSpec:
    """How to run and probe one service.

    ``args`` follow ``sys.executable`` (see the module docstring for the templates);
    ``probe_path`` is fetched from the service's URL and must answer 200 when it is ready;
    ``requires`` names services that must be ready before this one starts;
    ``module`` is the module whose presence makes the service available (None: always).
    """

    name: str
    title: str
    args: tuple[str, ...]
    probe_path: str
    requires: tuple[str, ...] = ()
    module: str | None = None

    def available(self) -> bool:
        if self.module is None:
            return True
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            return False

    def command(self, values: Mapping[str, str]) -> list[str]:
        """The full command line with the templates filled from ``values``."""
        return [sys.executable, *(a.format_map(values) for a in self.args)]


@dataclass(frozen=True)
class ServiceStatus:
    """One service at one moment: what the GUI and the node agent show."""

    name: str
    title: str
    state: ServiceState
    reason: str = ""  # why it is in this state, in words (empty when all is well)
    url: str | None = None
    pid: int | None = None
    restarts: int = 0  # restarts after crashes since the supervisor started
    since: float = 0.0  # wall-clock time it entered this state
    log_tail: tuple[str, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "state": self.state.value,
                "reason": self.reason, "url": self.url, "pid": self.pid,
                "restarts": self.restarts, "since": self.since}


@dataclass(frozen=True)
class ClusterSnapshot:
    """Every service of one supervisor, in start order."""

    root: Path
    services: tuple[ServiceStatus, ...]

    def service(self, name: str) -> ServiceStatus:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def all_ready(self) -> bool:
        """True when every available service is ready."""
        return all(s.state is ServiceState.READY for s in self.services
                   if s.state is not ServiceState.UNAVAILABLE)

    def as_dict(self) -> dict:
        return {"root": str(self.root), "services": [s.as_dict() for s in self.services]}


def pyme_desk_args(command: str, *args: str) -> tuple[str, ...]:
    """``-m pyme_desk <command> <args...>``: the arguments of a pyme-desk service."""
    return ("-m", "pyme_desk", command, *args)


def _escape(value: str) -> str:
    """A literal for an argument template (braces doubled)."""
    return value.replace("{", "{{").replace("}", "}}")


def cluster_services(root: Path, workers: int | None = None, *, token_file: Path | None = None,
                     network: bool = False, ruleserver: str | None = None) -> tuple[ServiceSpec, ...]:
    """Data server → rule server → node server for ``root``, as PYME's cluster of one runs them.

    On loopback (the default) every service binds 127.0.0.1 and registers in the same-machine
    sqlite registry.  ``network=True`` binds all interfaces and advertises on zeroconf; the
    data server then needs ``token_file`` for writes from the network.

    ``ruleserver`` (a URL, or ``auto`` to discover it) makes this a member node of a bigger
    cluster: no rule server of its own, and its workers use every data server of the cluster
    (found by discovery) rather than only the local one.
    """
    root_arg = _escape(str(root))
    reach = ("--bind", "0.0.0.0", "--advertise", "zeroconf") if network else ("--advertise", "local")
    token = ("--token-file", _escape(str(token_file))) if token_file else ()
    data = ServiceSpec(
        name="dataserver", title="data server", probe_path="/__status",
        args=pyme_desk_args("dataserver", "--root", root_arg, "--port", "{port}", *reach, *token,
                            "--port-file", "{port_file}", "--log-dir", "{log_dir}"),
        module="pyme_desk.storage.command")
    rule = ServiceSpec(
        name="ruleserver", title="rule server", probe_path="/distributor/queues",
        args=pyme_desk_args("ruleserver", "--port", "{port}", *reach,
                            "--journal", "{run_dir}/ruleserver-journal.sqlite",
                            "--port-file", "{port_file}", "--log-dir", "{log_dir}"),
        requires=("dataserver",), module="pyme_desk.scheduler.command")
    node_workers = ("--workers", str(int(workers))) if workers else ()
    if ruleserver is None:
        upstream, requires = ("--ruleserver", "{ruleserver}", "--server", "{dataserver}"), ("dataserver", "ruleserver")
    else:
        upstream, requires = ("--ruleserver", _escape(ruleserver)), ("dataserver",)
    node = ServiceSpec(
        name="nodeserver", title="node server", probe_path="/node/status",
        args=pyme_desk_args("nodeserver", *upstream,
                            "--root", root_arg, *node_workers, "--port", "{port}", *reach,
                            "--port-file", "{port_file}", "--log-dir", "{log_dir}"),
        requires=requires, module="pyme_desk.node.command")
    return (data, node) if ruleserver is not None else (data, rule, node)
