"""Node health: one :class:`NodeSnapshot` per node, with short histories for sparklines.

A node is known either through its data server's ``/__status`` document (protocol.md §2.7, our
extras under ``"Desk"``) or through its node agent's API (:mod:`.agents`: services, host and
GPU metrics).  Data servers are discovered (a :class:`~pyme_desk.cluster.ClusterClient` over
the cluster's servers) or attached by URL; agents are discovered (``_pyme-desk-node``) or
attached by URL and token.  Attached nodes are remembered in a small JSON file.  A node that
does not answer stays in the table as *unreachable* rather than vanishing, so a dying node is
seen.  Where a node runs a node server, its workers and tasks/s are read too, and the rule
server's own table of nodes (assignments, tasks/s) comes with every read.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import requests

from pyme_desk.cluster import ClusterClient, NoServersError
from pyme_desk.model.agents import (AgentClient, AgentError, TokenRefused, agent_services, gpu_history,
                                    gpu_state, host_history)
from pyme_desk.model.compute import RateMeter, read_node_server, read_rule_server_nodes
from pyme_desk.model.errors import describe
from pyme_desk.model.node_state import (AGENT, DATASERVER, HEALTHY, UNHEALTHY, UNREACHABLE, GpuState,
                                        NodeSnapshot, NodesSnapshot, RuleServerNode, parse_gpu)
from pyme_desk.model.services import FAILED

#: Samples kept per history (one a second: two minutes).
HISTORY_LENGTH = 120
#: A node is unhealthy when its data root has less free space than this (bytes) ...
#: (a busy CPU is a node doing its work, not a sick one)
LOW_DISK_BYTES = 1 << 30
#: ... or when its memory use is above this (%).
HIGH_MEMORY_PERCENT = 95.0
#: A node not heard from for this long (s) is forgotten, unless it was attached by hand.
FORGET_AFTER_S = 300.0


@dataclass(frozen=True)
class AttachedNode:
    """A node the user added by hand: a data server, or a node agent with its token."""

    url: str
    kind: str = DATASERVER  # DATASERVER or AGENT
    token: str = ""


class AttachedNodes:
    """Nodes the user added by hand, remembered in a JSON file.

    The file holds agents' tokens, so it is written readable by this user only (mode 0600 on
    POSIX; on Windows it lives in the user's own profile).  Older files, a plain list of URLs,
    are read as data servers.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._nodes: list[AttachedNode] = self._load()

    def urls(self) -> list[str]:
        with self._lock:
            return [n.url for n in self._nodes]

    def nodes(self) -> list[AttachedNode]:
        with self._lock:
            return list(self._nodes)

    def get(self, url: str) -> AttachedNode | None:
        with self._lock:
            return next((n for n in self._nodes if n.url == url), None)

    def add(self, url: str, kind: str = DATASERVER, token: str = "") -> str:
        """Remember a node (replacing what was known of the same URL); returns the normalised URL."""
        node = AttachedNode(normalise_url(url), kind, token)
        with self._lock:
            self._nodes = [n for n in self._nodes if n.url != node.url] + [node]
            self._save()
        return node.url

    def remove(self, url: str) -> None:
        with self._lock:
            kept = [n for n in self._nodes if n.url != url]
            if len(kept) != len(self._nodes):
                self._nodes = kept
                self._save()

    def _load(self) -> list[AttachedNode]:
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        nodes = []
        for item in data if isinstance(data, list) else []:
            if isinstance(item, str):
                nodes.append(AttachedNode(item))
            elif isinstance(item, dict) and isinstance(item.get("url"), str):
                kind = AGENT if item.get("kind") == AGENT else DATASERVER
                nodes.append(AttachedNode(item["url"], kind, str(item.get("token") or "")))
        return nodes

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps([{"url": n.url, "kind": n.kind, **({"token": n.token} if n.token else {})}
                           for n in self._nodes], indent=1)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # an older tmp file may have had wider permissions
        tmp.replace(self.path)


def normalise_url(url: str) -> str:
    """``host:port`` or ``http://host:port`` -> ``http://host:port/``; ValueError if it is not a URL."""
    url = url.strip()
    if not url:
        raise ValueError("enter a node address such as http://192.168.1.20:15349/")
    if "://" not in url:
        url = "http://" + url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if scheme not in ("http", "https") or not host or " " in host:
        raise ValueError(f"{url!r} is not a node address (expected http://host:port/)")
    return f"{scheme}://{host}/"


@dataclass
class _AgentCursor:
    """How far an agent's metric histories have been read."""

    host_since: float = 0.0
    gpu_since: float = 0.0


class NodesModel:
    """Reads every node's state and keeps histories; :meth:`read` is a poller's read function.

    ``client``: the discovered cluster's data servers.  ``discovered_agents``: URLs of node
    agents found on the network.  ``local_node``: ``(data server URL, node server URL)`` of the
    desk's own cluster (either may be "").  ``rule_server``: the rule server's URL ("" for none).
    ``token``: the cluster token, used for nodes attached without one of their own.
    """

    def __init__(self, client: ClusterClient | None, attached: AttachedNodes, *,
                 token: str | None = None, status_timeout: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 discovered_agents: Callable[[], list[str]] = list,
                 local_node: Callable[[], tuple[str, str]] = lambda: ("", ""),
                 rule_server: Callable[[], str] = str) -> None:
        self.client = client
        self.attached = attached
        self.token = token
        self.status_timeout = status_timeout
        self.discovered_agents = discovered_agents
        self.local_node = local_node
        self.rule_server = rule_server
        self._clock = clock
        self._session = requests.Session()
        self._rates = RateMeter()
        self._histories: dict[str, dict[str, deque]] = {}
        self._cursors: dict[str, _AgentCursor] = {}
        self._last: dict[str, NodeSnapshot] = {}

    def read(self) -> NodesSnapshot:
        now = self._clock()
        entries = {n.url: n for n in self.attached.nodes()}
        agents = {url: n.token or self.token or "" for url, n in entries.items() if n.kind == AGENT}
        for url in self.discovered_agents():
            agents.setdefault(normalise_url(url), self.token or "")
        # A discovered node that stops answering stays (as unreachable); a detached one goes.
        remembered = {url: node for url, node in self._last.items() if not node.attached and url not in entries}
        for url, node in remembered.items():
            if node.kind == AGENT:
                agents.setdefault(url, self.token or "")
        nodes = [n for n in (self._agent_node(url, token, url in entries, now) for url, token in agents.items())
                 if n is not None]
        served_by_agents = {s.url for n in nodes for s in n.services if s.name.startswith("dataserver") and s.url}
        docs = self._data_server_docs([url for url, n in entries.items() if n.kind == DATASERVER])
        wanted = set(docs) | {url for url, n in entries.items() if n.kind == DATASERVER} | \
            {url for url, n in remembered.items() if n.kind == DATASERVER}
        for url in sorted(wanted - (served_by_agents - set(entries))):
            node = self._node(url, docs.get(url, {"Responsive": False}), url in entries, now)
            if node is not None:
                nodes.append(node)
        nodes = self._with_compute(nodes)
        rule_nodes, rule_error = self._rule_nodes()
        by_id = {r.node_id: r for r in rule_nodes}
        nodes = [replace(n, assigned=by_id[n.node_id].assigned) if n.node_id in by_id else n for n in nodes]
        self._last = {n.url: n for n in nodes}
        self._rates.forget({n.url for n in nodes} | {"rule:" + r.node_id for r in rule_nodes})
        nodes.sort(key=lambda n: (not n.attached, n.name.lower(), n.url))
        return NodesSnapshot(tuple(nodes), now, rule_nodes, rule_error)

    def close(self) -> None:
        self._session.close()

    # -- data servers --------------------------------------------------------------------------

    def _data_server_docs(self, attached: list[str]) -> dict[str, dict]:
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
        return docs

    def _node(self, url: str, doc: dict, attached: bool, now: float) -> NodeSnapshot | None:
        previous = self._last.get(url)
        if not doc.get("Responsive", False):
            if self._forgotten(url, previous, attached, now):
                return None
            return self._unreachable(url, previous, attached, "does not answer")
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
        metrics: dict[str, list[float]] = {"cpu": [_nan(cpu)], "memory": [_nan(memory_percent)],
                                           "net_in": [_nan(net_in)], "net_out": [_nan(net_out)]}
        for dev in gpu.devices:
            mem_pct = (100.0 * dev.memory_used_bytes / dev.memory_total_bytes
                       if dev.memory_used_bytes is not None and dev.memory_total_bytes else None)
            metrics.update({f"gpu{dev.index}.utilization": [_nan(dev.utilization_percent)],
                            f"gpu{dev.index}.memory": [_nan(mem_pct)],
                            f"gpu{dev.index}.temperature": [_nan(dev.temperature_c)],
                            f"gpu{dev.index}.power": [_nan(dev.power_w)]})
        free = _int(disk.get("free"))
        desk = doc.get("Desk") if isinstance(doc.get("Desk"), dict) else {}
        health, reason = _judge(memory_percent, free, desk.get("DiskReadable") is False)
        return NodeSnapshot(
            url=url, name=str(doc.get("ComputerName") or url), attached=attached, health=health,
            reason=reason, cpu_percent=cpu, memory_percent=memory_percent, disk_free=free,
            disk_total=_int(disk.get("total")), net_in=net_in, net_out=net_out,
            uptime=str(doc.get("Uptime") or "").split(".")[0], last_seen=now, gpu=gpu,
            history=self._history(url, metrics))

    # -- node agents ---------------------------------------------------------------------------

    def _agent_node(self, url: str, token: str, attached: bool, now: float) -> NodeSnapshot | None:
        previous = self._last.get(url)
        cursor = self._cursors.setdefault(url, _AgentCursor())
        agent = AgentClient(url, token, timeout=self.status_timeout, session=self._session)
        try:
            status = agent.status()
            host = agent.host_metrics(cursor.host_since)
            gpu_doc = agent.gpu_metrics(cursor.gpu_since)
        except AgentError as exc:
            if self._forgotten(url, previous, attached, now):
                self._cursors.pop(url, None)
                return None
            health = UNHEALTHY if isinstance(exc, TokenRefused) else UNREACHABLE
            return replace(self._unreachable(url, previous, attached, str(exc)), health=health, kind=AGENT)
        name = str(status.get("host") or url)
        records = [r for r in host.get("history") or [] if isinstance(r, dict)]
        gpu_records = [r for r in gpu_doc.get("history") or [] if isinstance(r, dict)]
        if records:
            cursor.host_since = float(records[-1].get("t") or cursor.host_since)
        if gpu_records:
            cursor.gpu_since = float(gpu_records[-1].get("t") or cursor.gpu_since)
        latest = host.get("latest") if isinstance(host.get("latest"), dict) else {}
        services = agent_services(status, name, url, time.time())
        memory = _float(latest.get("memory_percent"))
        free = _int(latest.get("disk_free"))
        health, reason = _judge(memory, free, False)
        broken = [s.name for s in services if s.state in (FAILED, "unavailable")]
        if broken:
            health = UNHEALTHY
            reason = ", ".join(filter(None, [reason, "service " + ", ".join(broken) + " failed"]))
        started = [s.uptime_s for s in services if s.uptime_s is not None]
        return NodeSnapshot(
            url=url, name=name, attached=attached, health=health, reason=reason,
            cpu_percent=_float(latest.get("cpu_percent")), memory_percent=memory, disk_free=free,
            disk_total=_int(latest.get("disk_total")), net_in=_float(latest.get("net_recv")),
            net_out=_float(latest.get("net_send")), uptime=_uptime(max(started)) if started else "",
            last_seen=now, gpu=gpu_state(gpu_doc), kind=AGENT, services=services,
            history=self._history(url, {**host_history(records[-HISTORY_LENGTH:]),
                                        **gpu_history(gpu_records[-HISTORY_LENGTH:])}))

    # -- workers, tasks/s, the rule server -----------------------------------------------------

    def _with_compute(self, nodes: list[NodeSnapshot]) -> list[NodeSnapshot]:
        local_data, local_node = self.local_node()
        out = []
        for node in nodes:
            node_server = local_node if node.url == local_data else next(
                (s.url for s in node.services if s.name == "nodeserver" and s.url and s.pid), "")
            if node_server and node.health != UNREACHABLE:
                try:
                    state = read_node_server(self._session, node_server)
                except (requests.RequestException, ValueError):
                    pass  # a node server being restarted: no worker row this time
                else:
                    node = replace(node, node_id=state.node_id, workers=state.workers,
                                   tasks_per_s=self._rates.update(node.url, state.tasks_completed))
            out.append(node)
        return out

    def _rule_nodes(self) -> tuple[tuple[RuleServerNode, ...], str]:
        url = self.rule_server()
        if not url:
            return (), ""
        try:
            return read_rule_server_nodes(self._session, url, self._rates), ""
        except (requests.RequestException, ValueError) as exc:
            return (), f"cannot read the rule server: {describe(exc)}"

    # -- shared --------------------------------------------------------------------------------

    def _forgotten(self, url: str, previous: NodeSnapshot | None, attached: bool, now: float) -> bool:
        if previous is not None and not attached and previous.last_seen is not None \
                and now - previous.last_seen > FORGET_AFTER_S:
            self._histories.pop(url, None)
            return True
        return False

    def _unreachable(self, url: str, previous: NodeSnapshot | None, attached: bool, reason: str) -> NodeSnapshot:
        services = tuple(replace(s, state="unreachable", pid=None, uptime_s=None)
                         for s in (previous.services if previous else ()))
        return NodeSnapshot(url=url, name=previous.name if previous else url, attached=attached,
                            health=UNREACHABLE, reason=reason, kind=previous.kind if previous else DATASERVER,
                            last_seen=previous.last_seen if previous else None, services=services,
                            gpu=GpuState(False, "unknown: the node does not answer"),
                            history=self._history(url, {k: [math.nan] for k in self._histories.get(url, {})}))

    def _history(self, url: str, metrics: dict[str, list[float]]) -> dict[str, tuple[float, ...]]:
        series = self._histories.setdefault(url, {})
        for name, values in metrics.items():
            series.setdefault(name, deque(maxlen=HISTORY_LENGTH)).extend(values)
        return {name: tuple(values) for name, values in series.items()}


def _judge(memory: float | None, free: int | None, unreadable: bool) -> tuple[str, str]:
    problems = []
    if unreadable:
        problems.append("data root unreadable")
    elif free is not None and free < LOW_DISK_BYTES:
        problems.append(f"disk almost full ({free / 2**20:.0f} MiB free)")
    if memory is not None and memory > HIGH_MEMORY_PERCENT:
        problems.append(f"memory {memory:.0f}%")
    return (UNHEALTHY, ", ".join(problems)) if problems else (HEALTHY, "")


def _uptime(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400} days, {s % 86400 // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 86400 \
        else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


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


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
