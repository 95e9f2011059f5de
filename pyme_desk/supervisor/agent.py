"""The node agent: a machine's supervisor plus a small control API for the desk.

Endpoints (JSON; GET and POST alike, as in every pyme-desk API):

``/agent/status``                 host name, data root and every service's state
``/agent/services``               the services alone
``/agent/start?service=NAME``     start a stopped or failed service        (token)
``/agent/stop?service=NAME``      stop it (graceful, then killed)          (token)
``/agent/restart?service=NAME``   stop then start it                       (token)
``/agent/log?service=NAME&lines=N``  the last N lines of its output
``/agent/metrics/host?since=T``   CPU, memory, data-root disk and network rates: the latest
                                  sample and the history after wall-clock time T
``/agent/metrics/gpu?since=T``    the same for NVIDIA GPUs, or why there is no GPU data

Calls marked *token* need ``Authorization: Bearer <cluster token>`` (constant-time compare);
when the agent listens off loopback every call needs it.  The agent is advertised as
``_pyme-desk-node`` (zeroconf off loopback, the same-machine sqlite registry on loopback).
"""
from __future__ import annotations

import collections
import hmac
import logging
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from pyme_desk import __version__
from pyme_desk.discovery.addresses import is_loopback
from pyme_desk.errors import UsageError
from pyme_desk.monitor.gpu import GPUSnapshot, gpu_snapshot
from pyme_desk.monitor.host import HostSnapshot, host_snapshot
from pyme_desk.names import computer_name, service_name
from pyme_desk.supervisor.supervisor import Supervisor
from pyme_desk.web.errors import HTTPError
from pyme_desk.web.http import Request
from pyme_desk.web.jsonapi import JSONApp, blocking, param
from pyme_desk.web.service import BackgroundServer

log = logging.getLogger(__name__)

#: zeroconf / sqlite service type of node agents
AGENT_PROTOCOL = "_pyme-desk-node"
#: process name in the advertised service name (``PYMEDeskNode:<host> - PID:<pid>``)
AGENT_PROCESS_NAME = "PYMEDeskNode"
#: samples kept per metric ring buffer (10 minutes at one sample a second)
HISTORY_LENGTH = 600


class MetricsRecorder:
    """Samples host and GPU metrics every ``interval`` s on a daemon thread into ring buffers."""

    def __init__(self, root: Path, interval: float = 1.0, history: int = HISTORY_LENGTH) -> None:
        self.root = Path(root)
        self.interval = interval
        self._host: collections.deque[dict] = collections.deque(maxlen=history)
        self._gpu: collections.deque[dict] = collections.deque(maxlen=history)
        self._last_host: HostSnapshot | None = None
        self._last_gpu: GPUSnapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="pyme-desk-agent-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def host(self, since: float = 0.0) -> dict[str, Any]:
        history = [r for r in list(self._host) if r["t"] > since]
        return {"latest": history[-1] if history else (self._host[-1] if self._host else None),
                "history": history}

    def gpu(self, since: float = 0.0) -> dict[str, Any]:
        snap = self._last_gpu
        history = [r for r in list(self._gpu) if r["t"] > since]
        return {"available": bool(snap and snap.available),
                "state": snap.state.value if snap else "unknown",
                "reason": snap.reason if snap else "not sampled yet",
                "devices": [asdict(g) for g in snap.gpus] if snap else [],
                "history": history}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception:  # keep the last samples; never let the thread die
                log.exception("sampling host metrics failed")

    def _sample(self) -> None:
        host = host_snapshot(self.root, self._last_host)
        self._last_host = host
        cores = host.cpu_percent
        net = [rate for name, rate in host.network.items() if not name.startswith("lo")]
        self._host.append({
            "t": host.time,
            "cpu_percent": round(sum(cores) / len(cores), 1) if cores else 0.0,
            "cpu_per_core": list(cores),
            "memory_percent": host.memory.get("percent"),
            "memory_used": host.memory.get("used"),
            "memory_total": host.memory.get("total"),
            "disk_total": host.disk.total if host.disk else None,
            "disk_used": host.disk.used if host.disk else None,
            "disk_free": host.disk.free if host.disk else None,
            "net_send": sum(r.send for r in net),
            "net_recv": sum(r.recv for r in net),
        })
        gpu = gpu_snapshot()
        self._last_gpu = gpu
        if gpu.available:
            self._gpu.append({"t": host.time, "gpus": [
                {"index": g.index, "utilization_percent": g.utilization_percent,
                 "memory_percent": g.memory_percent, "memory_used_bytes": g.memory_used_bytes,
                 "temperature_c": g.temperature_c, "power_w": g.power_w} for g in gpu.gpus]})


class NodeAgent:
    """Runs ``supervisor`` and serves the control API on ``bind:port``; see the module docstring.

    ``token`` is required (every mutating call checks it).  ``advertise`` is ``auto``
    (zeroconf off loopback, sqlite on loopback), ``zeroconf``, ``local`` or ``none``.
    """

    def __init__(self, supervisor: Supervisor, token: str, *, bind: str = "127.0.0.1", port: int = 0,
                 advertise: str = "auto", advertise_address: str | None = None,
                 metrics_interval: float = 1.0) -> None:
        if not token:
            raise UsageError("the node agent needs a cluster token")
        self.supervisor = supervisor
        self.token = token
        self.bind = bind
        self.loopback = is_loopback(bind)
        self.advertise = ("local" if self.loopback else "zeroconf") if advertise == "auto" else advertise
        self.advertise_address = advertise_address
        self.metrics = MetricsRecorder(supervisor.root, metrics_interval)
        self.url = ""
        self.port = port
        self._advertiser = None
        self._server = BackgroundServer(self._app, bind, port, name="node agent",
                                        on_started=self._on_started, on_stopped=self._on_stopped)

    def start(self) -> "NodeAgent":
        """Start the services, the metrics and the API (returns once the API listens)."""
        self.supervisor.start()
        try:
            self.metrics.start()
            self.port = self._server.start()
        except BaseException:
            self.metrics.stop()
            self.supervisor.stop()
            raise
        return self

    def stop(self) -> None:
        self._server.stop(grace=5.0)
        self.metrics.stop()
        self.supervisor.stop()

    def __enter__(self) -> "NodeAgent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP --------------------------------------------------------------------------------
    def _app(self) -> JSONApp:
        read, write = self._read_only, self._mutating
        return JSONApp({
            "/agent/status": read(self._status),
            "/agent/services": read(lambda req, body: [s.as_dict() for s in self.supervisor.snapshot().services]),
            "/agent/start": write(lambda req, body: self._control(req, self.supervisor.start_service)),
            "/agent/stop": write(lambda req, body: self._control(req, self.supervisor.stop_service)),
            "/agent/restart": write(lambda req, body: self._control(req, self.supervisor.restart_service)),
            "/agent/log": read(self._log),
            "/agent/metrics/host": read(lambda req, body: self.metrics.host(param(req, "since", float, 0.0))),
            "/agent/metrics/gpu": read(lambda req, body: self.metrics.gpu(param(req, "since", float, 0.0))),
        })

    def _read_only(self, handler: Callable[[Request, bytes], Any]) -> Callable[[Request, bytes], Any]:
        @blocking  # the supervisor's lock can be held for a moment: keep the event loop free
        def guarded(req: Request, body: bytes) -> Any:
            if not self.loopback:
                self._authorize(req)
            return handler(req, body)
        return guarded

    def _mutating(self, handler: Callable[[Request, bytes], Any]) -> Callable[[Request, bytes], Any]:
        @blocking
        def guarded(req: Request, body: bytes) -> Any:
            self._authorize(req)
            return handler(req, body)
        return guarded

    def _authorize(self, req: Request) -> None:
        scheme, _, value = (req.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            raise HTTPError(401, "this call needs the cluster token (Authorization: Bearer <token>)")

    def _status(self, req: Request, body: bytes) -> dict[str, Any]:
        snap = self.supervisor.snapshot()
        return {"host": computer_name(), "root": str(snap.root), "pid": os.getpid(),
                "version": __version__, "time": time.time(),
                "services": [s.as_dict() for s in snap.services]}

    def _control(self, req: Request, action: Callable[[str], Any]) -> dict[str, Any]:
        name = param(req, "service")
        try:
            status = action(name)
        except UsageError as e:
            raise HTTPError(404 if "no service called" in str(e) else 409, str(e)) from None
        return status.as_dict()

    def _log(self, req: Request, body: bytes) -> dict[str, Any]:
        name = param(req, "service")
        lines = param(req, "lines", int, 100)
        if lines < 0:
            raise HTTPError(400, "lines must not be negative")
        try:
            return {"service": name, "lines": self.supervisor.tail(name, lines)}
        except UsageError as e:
            raise HTTPError(404, str(e)) from None

    # -- advertisement -----------------------------------------------------------------------
    def _on_started(self, port: int) -> None:
        address = "127.0.0.1" if self.loopback or self.bind in ("", "0.0.0.0") else self.bind
        self.url = f"http://{address}:{port}/"
        from pyme_desk.discovery.advertiser import start_advertiser

        try:
            self._advertiser = start_advertiser(AGENT_PROTOCOL, service_name(AGENT_PROCESS_NAME), port,
                                                self.advertise, self.advertise_address)
        except Exception as e:  # the API works without being findable; say why it is not
            log.warning("the node agent is not advertised: %s", e)
            self._advertiser = None
        if self._advertiser is not None and self.advertise == "zeroconf" and self._advertiser.address:
            self.url = f"http://{self._advertiser.address}:{port}/"

    def _on_stopped(self) -> None:
        if self._advertiser is not None:
            self._advertiser.stop()
