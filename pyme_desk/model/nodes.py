"""Node health: one :class:`NodeSnapshot` per data server, with short histories for sparklines.

A node is known through its data server's ``/__status`` document (protocol.md §2.7, our
extras under ``"Desk"``), either discovered (a :class:`~pyme_desk.cluster.ClusterClient` over
the cluster's servers) or attached by URL (remembered in a small JSON file).  A node that does
not answer stays in the table as *unreachable* rather than vanishing, so a dying node is seen.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyme_desk.cluster import ClusterClient, NoServersError

#: Samples kept per history (one a second: two minutes).
HISTORY_LENGTH = 120
#: A node is unhealthy when its data root has less free space than this (bytes) ...
#: (a busy CPU is a node doing its work, not a sick one)
LOW_DISK_BYTES = 1 << 30
#: ... or when its memory use is above this (%).
HIGH_MEMORY_PERCENT = 95.0
#: A node not heard from for this long (s) is forgotten, unless it was attached by hand.
FORGET_AFTER_S = 300.0

HEALTHY, UNHEALTHY, UNREACHABLE = "healthy", "unhealthy", "unreachable"


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
class NodeSnapshot:
    """One node at one moment.  ``history`` maps a metric name to its recent values, oldest first:
    ``cpu``, ``memory``, ``net_in``, ``net_out``, and ``gpu<i>.<metric>`` per GPU."""

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


@dataclass(frozen=True)
class NodesSnapshot:
    """Every known node, attached ones first, then by name."""

    nodes: tuple[NodeSnapshot, ...]
    time: float

    def by_url(self, url: str) -> NodeSnapshot | None:
        return next((n for n in self.nodes if n.url == url), None)


class AttachedNodes:
    """Node URLs the user added by hand, remembered in a JSON file (a list of URLs)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._urls: list[str] = self._load()

    def urls(self) -> list[str]:
        with self._lock:
            return list(self._urls)

    def add(self, url: str) -> str:
        url = normalise_url(url)
        with self._lock:
            if url not in self._urls:
                self._urls.append(url)
                self._save()
        return url

    def remove(self, url: str) -> None:
        with self._lock:
            if url in self._urls:
                self._urls.remove(url)
                self._save()

    def _load(self) -> list[str]:
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [str(u) for u in data if isinstance(u, str)] if isinstance(data, list) else []

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._urls, indent=1), encoding="utf-8")
        tmp.replace(self.path)


def normalise_url(url: str) -> str:
    """``host:port`` or ``http://host:port`` -> ``http://host:port/``; ValueError if it is not a URL."""
    url = url.strip()
    if not url:
        raise ValueError("enter a node address such as http://192.168.1.20:15348/")
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if scheme not in ("http", "https") or not host or " " in host:
        raise ValueError(f"{url!r} is not a node address (expected http://host:port/)")
    return f"{scheme}://{host}/"


class NodesModel:
    """Reads every node's status and keeps histories; :meth:`read` is a poller's read function.

    ``discovered`` returns the status documents of the discovered cluster (by default through
    ``client.get_status()``); attached URLs are read through a client of their own.
    """

    def __init__(self, client: ClusterClient | None, attached: AttachedNodes, *,
                 token: str | None = None, status_timeout: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.attached = attached
        self.token = token
        self.status_timeout = status_timeout
        self._clock = clock
        self._histories: dict[str, dict[str, deque]] = {}
        self._last: dict[str, NodeSnapshot] = {}

    def read(self) -> NodesSnapshot:
        now = self._clock()
        attached = set(self.attached.urls())
        docs: dict[str, dict] = {}
        if self.client is not None:
            try:
                for doc in self.client.get_status():
                    docs[_doc_url(doc)] = doc
            except NoServersError:
                pass
        if attached:
            client = ClusterClient(servers=sorted(attached), server_filter="", token=self.token or "",
                                   status_timeout=self.status_timeout)
            try:
                for doc in client.get_status():
                    docs[_doc_url(doc)] = doc
            finally:
                client.close()
        nodes = []
        # A discovered node that stops answering stays (as unreachable); a detached one goes.
        remembered = {url for url, node in self._last.items() if not node.attached}
        for url in sorted(set(docs) | attached | remembered):
            doc = docs.get(url)
            if doc is None:
                doc = {"Responsive": False}
            node = self._node(url, doc, url in attached, now)
            if node is None:
                continue
            nodes.append(node)
        self._last = {n.url: n for n in nodes}
        nodes.sort(key=lambda n: (not n.attached, n.name.lower(), n.url))
        return NodesSnapshot(tuple(nodes), now)

    def _node(self, url: str, doc: dict, attached: bool, now: float) -> NodeSnapshot | None:
        previous = self._last.get(url)
        if not doc.get("Responsive", False):
            if previous is not None and not attached and previous.last_seen is not None \
                    and now - previous.last_seen > FORGET_AFTER_S:
                self._histories.pop(url, None)
                return None
            name = previous.name if previous else url
            return NodeSnapshot(url=url, name=name, attached=attached, health=UNREACHABLE,
                                reason="does not answer", last_seen=previous.last_seen if previous else None,
                                gpu=GpuState(False, "unknown: the node does not answer"),
                                history=self._history(url, dict.fromkeys(self._histories.get(url, {}))))
        cpu = _mean(doc.get("CPUUsage"))
        mem = doc.get("MemUsage") or {}
        memory_percent = _float(mem.get("percent"))
        disk = doc.get("Disk") or {}
        net_in = net_out = None
        network = doc.get("Network")
        if isinstance(network, dict):
            rates = [v for k, v in network.items() if isinstance(v, dict) and not _is_loopback_nic(k)]
            net_in = float(sum(_float(v.get("recv")) or 0.0 for v in rates))
            net_out = float(sum(_float(v.get("send")) or 0.0 for v in rates))
        gpu = parse_gpu(doc)
        metrics: dict[str, float | None] = {"cpu": cpu, "memory": memory_percent,
                                             "net_in": net_in, "net_out": net_out}
        for dev in gpu.devices:
            mem_pct = (100.0 * dev.memory_used_bytes / dev.memory_total_bytes
                       if dev.memory_used_bytes is not None and dev.memory_total_bytes else None)
            metrics.update({f"gpu{dev.index}.utilization": dev.utilization_percent,
                            f"gpu{dev.index}.memory": mem_pct,
                            f"gpu{dev.index}.temperature": dev.temperature_c,
                            f"gpu{dev.index}.power": dev.power_w})
        free = _int(disk.get("free"))
        health, reason = _judge(memory_percent, free, doc)
        return NodeSnapshot(
            url=url, name=str(doc.get("ComputerName") or url), attached=attached, health=health,
            reason=reason, cpu_percent=cpu, memory_percent=memory_percent, disk_free=free,
            disk_total=_int(disk.get("total")), net_in=net_in, net_out=net_out,
            uptime=str(doc.get("Uptime") or ""), last_seen=now, gpu=gpu,
            history=self._history(url, metrics))

    def _history(self, url: str, metrics: dict[str, float | None]) -> dict[str, tuple[float, ...]]:
        series = self._histories.setdefault(url, {})
        for name, value in metrics.items():
            series.setdefault(name, deque(maxlen=HISTORY_LENGTH)).append(
                math.nan if value is None else float(value))
        return {name: tuple(values) for name, values in series.items()}


def parse_gpu(doc: dict) -> GpuState:
    """The GPU part of a ``/__status`` document (our ``Desk.GPU``), or why there is none."""
    desk = doc.get("Desk") if isinstance(doc.get("Desk"), dict) else {}
    info = desk.get("GPU")
    if not isinstance(info, dict):
        return GpuState(False, "this node does not report GPUs (not a pyme-desk data server)")
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


def _judge(memory: float | None, free: int | None, doc: dict) -> tuple[str, str]:
    desk = doc.get("Desk") if isinstance(doc.get("Desk"), dict) else {}
    problems = []
    if desk.get("DiskReadable") is False:
        problems.append("data root unreadable")
    elif free is not None and free < LOW_DISK_BYTES:
        problems.append(f"disk almost full ({free / 2**20:.0f} MiB free)")
    if memory is not None and memory > HIGH_MEMORY_PERCENT:
        problems.append(f"memory {memory:.0f}%")
    return (UNHEALTHY, ", ".join(problems)) if problems else (HEALTHY, "")


def _doc_url(doc: dict) -> str:
    url = doc.get("URL")
    if url:
        return str(url)
    return f"http://{doc.get('IPAddress')}:{doc.get('Port')}/"


def _is_loopback_nic(name: str) -> bool:
    return name == "lo" or name.lower().startswith("loopback")


def _mean(values: Any) -> float | None:
    if not isinstance(values, (list, tuple)) or not values:
        return None
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
