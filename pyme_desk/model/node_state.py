"""What the desk knows of a node at one moment: :class:`NodeSnapshot` and its parts.

Plain immutable records shared by the readers (:mod:`.nodes`, :mod:`.agents`, :mod:`.compute`)
and the panels; :func:`parse_gpu_info` reads a GPU report, whether a data server's
``Desk.GPU`` or a node agent's ``/agent/metrics/gpu``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyme_desk.model.services import ServiceSnapshot

HEALTHY, UNHEALTHY, UNREACHABLE = "healthy", "unhealthy", "unreachable"
#: How a node became known: its data server's ``/__status``, or a node agent's API.
DATASERVER, AGENT = "dataserver", "agent"


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as a node reports it; ``None`` marks a value the driver could not give."""

    index: int
    name: str | None
    utilization_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: float | None
    power_w: float | None
    processes: tuple[tuple[int, str | None, int | None], ...]  # (pid, name, bytes)


@dataclass(frozen=True)
class GpuState:
    """A node's GPUs, or the reason it has none."""

    available: bool
    reason: str
    devices: tuple[GpuDevice, ...] = ()


@dataclass(frozen=True)
class WorkerState:
    """One worker process of a node server (``/node/status`` ``workers``)."""

    pid: int | None
    state: str  # starting, idle, busy or restarting
    task: str | None
    tasks_done: int
    errors: int
    restarts: int


@dataclass(frozen=True)
class RuleServerNode:
    """One node as the rule server sees it (``/status`` ``nodes``), with its recent tasks/s."""

    node_id: str
    address: str
    alive: bool
    last_seen_s: float
    assigned: int
    completed: int
    failed: int
    tasks_per_s: float | None


@dataclass(frozen=True)
class NodeSnapshot:
    """One node at one moment.  ``history`` maps a metric name to its recent values, oldest first:
    ``cpu``, ``memory``, ``net_in``, ``net_out``, and ``gpu<i>.<metric>`` per GPU.

    ``kind`` is :data:`DATASERVER` or :data:`AGENT`; an agent's node also lists its
    ``services``.  ``workers`` and ``tasks_per_s`` come from the node's node server, ``assigned``
    from the rule server (``None``: not known)."""

    url: str
    name: str
    attached: bool
    health: str  # HEALTHY, UNHEALTHY or UNREACHABLE
    reason: str  # why it is not healthy ("" when it is)
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_free: int | None = None
    disk_total: int | None = None
    net_in: float | None = None  # bytes/s, all interfaces but loopback
    net_out: float | None = None
    uptime: str = ""
    last_seen: float | None = None  # time.time() of the last answer
    gpu: GpuState = GpuState(False, "unknown: the node has not answered yet")
    history: dict[str, tuple[float, ...]] = field(default_factory=dict)
    kind: str = DATASERVER
    services: tuple[ServiceSnapshot, ...] = ()
    node_id: str = ""
    workers: tuple[WorkerState, ...] = ()
    tasks_per_s: float | None = None
    assigned: int | None = None

    @property
    def workers_text(self) -> str:
        """``"2 busy, 1 idle"`` ("" when the node has no node server we can read)."""
        counts: dict[str, int] = {}
        for w in self.workers:
            counts[w.state] = counts.get(w.state, 0) + 1
        known = [s for s in ("busy", "idle", "starting", "restarting") if s in counts]
        return ", ".join(f"{counts[s]} {s}" for s in known + sorted(set(counts) - set(known)))


@dataclass(frozen=True)
class NodesSnapshot:
    """Every known node (attached ones first, then by name) and the rule server's node table."""

    nodes: tuple[NodeSnapshot, ...]
    time: float
    rule_nodes: tuple[RuleServerNode, ...] = ()
    rule_server_error: str = ""  # why the rule server's node table is missing ("" when it is not)

    def by_url(self, url: str) -> NodeSnapshot | None:
        return next((n for n in self.nodes if n.url == url), None)


def parse_gpu(doc: dict) -> GpuState:
    """The GPU part of a data server's ``/__status`` document (our ``Desk.GPU``), or why there is none."""
    desk = doc.get("Desk") if isinstance(doc.get("Desk"), dict) else {}
    info = desk.get("GPU")
    if not isinstance(info, dict):
        return GpuState(False, "this node does not report GPUs (not a pyme-desk data server)")
    return parse_gpu_info(info)


def parse_gpu_info(info: dict) -> GpuState:
    """``{"available", "reason", "devices": [...]}`` (a GPU report) as a :class:`GpuState`."""
    devices = []
    for d in info.get("devices") or []:
        if not isinstance(d, dict):
            continue
        procs = tuple((int(p.get("pid", 0)), p.get("name"), _int(p.get("used_memory_bytes")))
                      for p in (d.get("processes") or []) if isinstance(p, dict))
        devices.append(GpuDevice(index=int(d.get("index", len(devices))), name=d.get("name"),
                                 utilization_percent=_float(d.get("utilization_percent")),
                                 memory_used_bytes=_int(d.get("memory_used_bytes")),
                                 memory_total_bytes=_int(d.get("memory_total_bytes")),
                                 temperature_c=_float(d.get("temperature_c")),
                                 power_w=_float(d.get("power_w")), processes=procs))
    return GpuState(bool(info.get("available")) and bool(devices), str(info.get("reason") or ""),
                    tuple(devices))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
