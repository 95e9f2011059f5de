"""The desk: the local cluster, a client over the cluster, and one poller per kind of state.

:class:`Desk` is what the main window shows, without Qt: ``start()`` brings up the local
cluster (through a :class:`~pyme_desk.model.services.ServiceControl`) and starts the pollers;
``listen(name, callback)`` subscribes to a poller's :class:`~pyme_desk.model.poller.PollResult`
stream (callbacks run on the poller's thread); ``stop()`` stops the pollers, the demo
acquisitions and the local cluster.  Poller names are the keys of :data:`POLL_INTERVALS`.

Other nodes come in two kinds: data servers and node agents (``pyme-desk node``).  Node agents
are found on the network (``_pyme-desk-node``) or attached by URL and token
(:meth:`Desk.attach_node`); their services are started and stopped through their API
(:meth:`Desk.control`), and their logs read from it (:meth:`Desk.service_log`).
"""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from typing import Callable

from pyme_desk.cluster import ClusterClient
from pyme_desk.config import Config, user_config_dir
from pyme_desk.model.acquisition import SimulatedAcquisition
from pyme_desk.model.agents import AgentClient, NotAnAgent
from pyme_desk.model.analysis import AnalysisRun
from pyme_desk.model.errors import describe
from pyme_desk.model.files import FilesModel
from pyme_desk.model.node_state import AGENT, DATASERVER
from pyme_desk.model.nodes import AttachedNode, AttachedNodes, NodesModel, normalise_url
from pyme_desk.model.poller import Poller, PollResult
from pyme_desk.model.rules import RulesModel
from pyme_desk.model.services import InProcessCluster, ServiceControl

#: poller name -> seconds between reads (the GUI refreshes at least this often).
POLL_INTERVALS = {"services": 0.5, "nodes": 1.0, "acquisitions": 0.25, "rules": 1.0, "analyses": 0.5}


class Desk:
    """See the module docstring.

    ``services``: the local cluster's control (default: :func:`default_services`).  ``discover``: find the cluster's other data
    servers over the network (else the client uses the local servers only).
    ``attached_file``: where attached nodes are remembered (``None``: not remembered).
    ``discover_agents``: where to look for node agents: ``"network"`` (zeroconf and this
    machine's registry), ``"local"`` (this machine's registry only) or ``"none"``; by default
    ``"network"`` when ``discover`` is true, else ``"none"``.
    """

    def __init__(self, config: Config, *, services: ServiceControl | None = None,
                 discover: bool = True, attached_file: Path | None = None,
                 discover_agents: str | None = None) -> None:
        self.config = config
        self.discover = discover
        self.discover_agents = discover_agents or ("network" if discover else "none")
        if self.discover_agents not in ("network", "local", "none"):
            raise ValueError(f"discover_agents must be network, local or none, not {discover_agents!r}")
        self._agent_browser = None
        self.services = services or default_services(config, discover)
        self.attached = AttachedNodes(attached_file)
        self.client: ClusterClient | None = None
        self.files: FilesModel | None = None
        self.acquisitions: list[SimulatedAcquisition] = []
        self.analyses: list[AnalysisRun] = []
        self.start_error = ""  # why the local cluster did not start, if it did not
        self._listeners: dict[str, list[Callable[[PollResult], None]]] = {k: [] for k in POLL_INTERVALS}
        self._latest: dict[str, PollResult] = {}
        self._pollers: dict[str, Poller] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the local cluster and the pollers; a service that fails to start is reported by
        the services poller, not raised, so the window still comes up."""
        start_all = getattr(self.services, "start_all", None)
        if start_all is not None:
            try:
                start_all()
            except Exception as exc:  # the window shows it; the rest of the desk still comes up
                self.start_error = f"the local cluster did not start: {describe(exc)}"
        self.client = self._make_client()
        self.files = FilesModel(self.client)
        nodes = NodesModel(self.client, self.attached, token=self.config.cluster_token or "",
                           discovered_agents=self._start_agent_discovery(), local_node=self._local_node,
                           rule_server=lambda: self.rule_server_url)
        reads: dict[str, Callable] = {"services": self.services.snapshot, "nodes": nodes.read,
                                      "acquisitions": self.acquisition_snapshots,
                                      "analyses": self.analysis_snapshots,
                                      "rules": RulesModel(lambda: self.rule_server_url).read}
        for name, read in reads.items():
            self._pollers[name] = Poller(read, lambda r, n=name: self._publish(n, r),
                                         POLL_INTERVALS[name], name=name).start()

    def stop(self) -> None:
        """Stop demo acquisitions, analyses, pollers and the local cluster (remote nodes keep running)."""
        for acquisition in self.acquisitions:
            acquisition.stop()
        for analysis in self.analyses:
            analysis.cancel()
        for poller in self._pollers.values():
            poller.stop()
        self._pollers.clear()
        if self._agent_browser is not None:
            self._agent_browser.stop()
            self._agent_browser = None
        self.services.shutdown()
        if self.client is not None:
            self.client.close()

    # -- subscriptions -----------------------------------------------------------------------

    def listen(self, name: str, callback: Callable[[PollResult], None]) -> None:
        """Call ``callback(result)`` (on the poller's thread) after every read of poller ``name``."""
        with self._lock:
            self._listeners[name].append(callback)

    def latest(self, name: str) -> PollResult | None:
        return self._latest.get(name)

    def poke(self, name: str) -> None:
        """Read ``name`` again now (after a user action changed it)."""
        poller = self._pollers.get(name)
        if poller is not None:
            poller.poke()

    def _publish(self, name: str, result: PollResult) -> None:
        self._latest[name] = result
        with self._lock:
            listeners = list(self._listeners[name])
        for callback in listeners:
            callback(result)

    # -- actions -----------------------------------------------------------------------------

    def simulate(self, series: str | None = None, **options) -> SimulatedAcquisition:
        """Start a simulated acquisition (demo mode) spooled into this desk's cluster."""
        if self.client is None:
            raise RuntimeError("the desk is not started")
        series = series or time.strftime("demo/%Y_%m_%d/sim_%H%M%S")
        acquisition = SimulatedAcquisition(self.client, series, **options).start()
        self.acquisitions.append(acquisition)
        self.poke("acquisitions")
        return acquisition

    def acquisition_snapshots(self) -> tuple:
        return tuple(a.snapshot() for a in self.acquisitions)

    def busy(self) -> list[str]:
        """What would be cut short by closing now (acquisitions spooling, analyses running)."""
        return ([f"acquisition {a.series}" for a in self.acquisitions if a.snapshot().running]
                + [f"analysis of {a.series}" for a in self.analyses if a.snapshot().running])

    @property
    def rule_server_url(self) -> str:
        """The local cluster's rule server ("" when it has none, or it is not running)."""
        return next((s.url for s in self.services.snapshot() if s.name == "ruleserver" and s.url), "")

    def analysis_unavailable(self) -> str:
        """Why localization analysis cannot be launched from the desk ("" when it can)."""
        names = {s.name for s in self.services.snapshot()}
        if not {"ruleserver", "nodeserver"} <= names:
            return ("localization analysis needs a rule server and a node server in the local "
                    "cluster; this cluster of one runs a data server only")
        return ""

    def launch_analysis(self, series: str, settings: dict) -> AnalysisRun:
        """Start analysing cluster series ``series``; progress and preview via the analyses poller."""
        reason = self.analysis_unavailable() or ("" if self.rule_server_url else "the rule server is not running")
        if reason:
            raise RuntimeError(reason)
        run = AnalysisRun(self.client, self.rule_server_url, series, settings).start()
        self.analyses.append(run)
        self.poke("analyses")
        return run

    def attach_node(self, url: str, token: str = "") -> AttachedNode:
        """Remember a node by address (blocking: call it off the GUI thread).

        A node agent must accept ``token`` (else :class:`~pyme_desk.model.agents.TokenRefused`);
        an address without the agent API is attached as a data server, which must answer.
        Raises ValueError for a malformed address and AgentError (a readable message) otherwise.
        """
        url = normalise_url(url)
        agent = AgentClient(url, token)
        try:
            agent.status()
            agent.check_token()
            kind = AGENT
        except NotAnAgent:
            with ClusterClient(servers=[url], server_filter="", status_timeout=2.0) as probe:
                if not probe.get_status()[0].get("Responsive", False):
                    raise NotAnAgent(f"{url} is neither a node agent nor a data server that answers") from None
            kind, token = DATASERVER, ""
        finally:
            agent.close()
        self.attached.add(url, kind, token)
        self.poke("nodes")
        return self.attached.get(url)

    def detach_node(self, url: str) -> None:
        self.attached.remove(url)
        self.poke("nodes")

    def _agent(self, node_url: str) -> AgentClient:
        attached = self.attached.get(node_url)
        return AgentClient(node_url, (attached.token if attached else "") or self.config.cluster_token or "")

    def control(self, action: str, name: str, node_url: str = "") -> None:
        """Start, stop or restart service ``name`` of the local cluster, or of the node agent at
        ``node_url`` (blocking)."""
        if not node_url:
            getattr(self.services, action)(name)
            return
        agent = self._agent(node_url)
        try:
            agent.control(action, name)
        finally:
            agent.close()
        self.poke("nodes")

    def service_log(self, name: str, node_url: str, lines: int = 500) -> list[str]:
        """The last ``lines`` lines of a node agent's service (blocking)."""
        agent = self._agent(node_url)
        try:
            return agent.log(name, lines)
        finally:
            agent.close()

    def analysis_snapshots(self) -> tuple:
        return tuple(a.snapshot() for a in self.analyses)

    def local_urls(self) -> list[str]:
        return [s.url for s in self.services.snapshot() if s.url and s.name.startswith("dataserver")]

    def _local_node(self) -> tuple[str, str]:
        """(data server URL, node server URL) of the local cluster ("" where there is none)."""
        urls = {s.name: s.url for s in self.services.snapshot() if s.url}
        return urls.get("dataserver", ""), urls.get("nodeserver", "")

    def _start_agent_discovery(self) -> Callable[[], list[str]]:
        """Browse for node agents as ``discover_agents`` says; returns what lists their URLs."""
        if self.discover_agents == "none":
            return list
        from pyme_desk.discovery.browser import ServiceBrowser
        from pyme_desk.supervisor.agent import AGENT_PROTOCOL

        self._agent_browser = ServiceBrowser(AGENT_PROTOCOL, use_zeroconf=self.discover_agents == "network",
                                             recheck_interval=2.0, probe_timeout=0.5)
        self._agent_browser.start()
        browser = self._agent_browser
        return lambda: [f"http://{r.address}:{r.port}/" for r in browser.services()]

    def _make_client(self) -> ClusterClient:
        token = self.config.cluster_token or ""
        if self.discover:
            return ClusterClient(server_filter=self.config.server_filter, token=token,
                                 local_root=self.config.data_root)
        return ClusterClient(servers=self.local_urls(), server_filter=self.config.server_filter,
                             token=token, local_root=self.config.data_root)


def default_services(config: Config, discover: bool = True, **supervisor_options) -> ServiceControl:
    """The cluster of one: the supervisor's (data, rule and node server processes) when this
    build has it, else a data server in this process."""
    if importlib.util.find_spec("pyme_desk.supervisor") is not None:
        from pyme_desk.model.supervised import SupervisedCluster
        from pyme_desk.supervisor import Supervisor

        workers = config.get("nodeserver-num_workers")
        return SupervisedCluster(Supervisor(config.data_root, workers=workers, **supervisor_options))
    return InProcessCluster.data_server(config.data_root, server_filter=config.server_filter,
                                        advertise="local" if discover else "none", token=config.cluster_token)


def default_attached_file() -> Path:
    """Where the desk remembers nodes attached by URL."""
    return user_config_dir() / "desk-nodes.json"
