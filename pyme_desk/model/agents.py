"""Node agents (``pyme-desk node``) as the desk talks to them: status, control, logs, metrics.

:class:`AgentClient` wraps one agent's control API (see :mod:`pyme_desk.supervisor.agent`)
and turns every failure into an :class:`AgentError` with a message a user can read: a refused
token says so, a dead agent says it cannot be reached.  :func:`agent_services`,
:func:`host_history` and :func:`gpu_state` turn the agent's JSON into the desk's own records.
"""
from __future__ import annotations

import math
from typing import Any

import requests

from pyme_desk.model.errors import describe
from pyme_desk.model.node_state import GpuState, parse_gpu_info
from pyme_desk.model.services import ServiceSnapshot

#: Seconds any one call to an agent may take.
AGENT_TIMEOUT_S = 2.0
#: A service name no agent runs: asking to start it checks a token without changing anything.
_TOKEN_PROBE_SERVICE = "__pyme-desk-token-check__"
ACTIONS = ("start", "stop", "restart")


class AgentError(Exception):
    """A call to a node agent failed; ``str()`` is a one-line message for the window."""


class TokenRefused(AgentError):
    """The agent answered 401: the token is missing or wrong."""


class NotAnAgent(AgentError):
    """The address answers HTTP but has no ``/agent/`` API (a plain data server, say)."""


class AgentClient:
    """One node agent at ``url`` (``http://host:port/``), calling with ``token`` (may be empty)."""

    def __init__(self, url: str, token: str = "", timeout: float = AGENT_TIMEOUT_S,
                 session: requests.Session | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.timeout = timeout
        self._session = session or requests.Session()

    def call(self, endpoint: str, **params: Any) -> Any:
        """POST ``agent/<endpoint>`` with ``params``; the decoded JSON, or AgentError."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = self._session.post(self.url + "agent/" + endpoint, params=params, headers=headers,
                                   timeout=self.timeout)
        except requests.RequestException as exc:
            raise AgentError(f"node agent {self.url}: {describe(exc)}") from None
        if r.status_code == 401:
            raise TokenRefused(f"node agent {self.url} refused the token: enter the cluster token "
                               "of that node (its --token-file)")
        if r.status_code in (404, 405) and "no service called" not in _json_error(r):
            raise NotAnAgent(f"{self.url} is not a node agent (no /agent/ API there)")
        if r.status_code >= 400:
            raise AgentError(f"node agent {self.url}: {_json_error(r) or f'HTTP {r.status_code}'}")
        try:
            return r.json()
        except ValueError:
            raise NotAnAgent(f"{self.url} is not a node agent (its answer is not JSON)") from None

    def status(self) -> dict:
        return self.call("status")

    def control(self, action: str, service: str) -> dict:
        """``start``, ``stop`` or ``restart`` one service (needs the token)."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        return self.call(action, service=service)

    def log(self, service: str, lines: int = 500) -> list[str]:
        return [str(line) for line in self.call("log", service=service, lines=lines).get("lines", [])]

    def host_metrics(self, since: float = 0.0) -> dict:
        return self.call("metrics/host", since=since)

    def gpu_metrics(self, since: float = 0.0) -> dict:
        return self.call("metrics/gpu", since=since)

    def check_token(self) -> None:
        """Raise :class:`TokenRefused` unless the agent accepts the token (changes nothing: it
        asks to start a service no agent has, which a valid token turns into a 404)."""
        try:
            self.call("start", service=_TOKEN_PROBE_SERVICE)
        except TokenRefused:
            raise
        except NotAnAgent:
            raise
        except AgentError as exc:
            if "no service called" not in str(exc):
                raise

    def close(self) -> None:
        self._session.close()


def agent_services(status: dict, node: str, node_url: str, now: float) -> tuple[ServiceSnapshot, ...]:
    """The Services rows of an agent's ``/agent/status`` document."""
    rows = []
    for s in status.get("services") or []:
        if not isinstance(s, dict):
            continue
        since = s.get("since")
        running = s.get("pid") is not None and s.get("state") in ("starting", "ready", "degraded")
        rows.append(ServiceSnapshot(
            name=str(s.get("name", "?")), state=str(s.get("state", "unknown")), pid=s.get("pid"),
            url=str(s.get("url") or ""), restarts=int(s.get("restarts") or 0),
            uptime_s=max(now - float(since), 0.0) if running and isinstance(since, (int, float)) else None,
            message=str(s.get("reason") or ""), node=node, node_url=node_url))
    return tuple(rows)


#: agent host-metrics field -> the desk's history name
HOST_HISTORY_FIELDS = {"cpu_percent": "cpu", "memory_percent": "memory", "net_recv": "net_in",
                       "net_send": "net_out"}
#: agent GPU-metrics field -> the desk's per-GPU history name
GPU_HISTORY_FIELDS = {"utilization_percent": "utilization", "memory_percent": "memory",
                      "temperature_c": "temperature", "power_w": "power"}


def host_history(records: list[dict]) -> dict[str, list[float]]:
    """``{"cpu": [...], "memory": [...], "net_in": [...], "net_out": [...]}`` from host samples."""
    return {name: [_number(r.get(field)) for r in records] for field, name in HOST_HISTORY_FIELDS.items()}


def gpu_history(records: list[dict]) -> dict[str, list[float]]:
    """``{"gpu0.utilization": [...], ...}`` from GPU samples (NaN where a sample lacks a GPU)."""
    series: dict[str, list[float]] = {}
    for i, record in enumerate(records):
        for g in record.get("gpus") or []:
            for field, name in GPU_HISTORY_FIELDS.items():
                values = series.setdefault(f"gpu{g.get('index', 0)}.{name}", [math.nan] * i)
                values.extend([math.nan] * (i - len(values)))
                values.append(_number(g.get(field)))
    for values in series.values():
        values.extend([math.nan] * (len(records) - len(values)))
    return series


def gpu_state(doc: dict) -> GpuState:
    """The GPU part of ``/agent/metrics/gpu``."""
    return parse_gpu_info(doc)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _json_error(r: requests.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""
