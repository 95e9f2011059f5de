"""Pieces of the Nodes model on their own: rates, compute documents, agent documents, the
attached-nodes file, and an in-process node agent read through the model."""
import json
import math
import os
import stat
import time

import pytest

from pyme_desk.model.agents import AgentClient, NotAnAgent, TokenRefused, agent_services, gpu_history, host_history
from pyme_desk.model.compute import RateMeter, parse_node_status, parse_rule_nodes
from pyme_desk.model.node_state import AGENT, DATASERVER, NodeSnapshot, WorkerState
from pyme_desk.model.nodes import AttachedNodes, NodesModel
from pyme_desk.storage.server import DataServer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_meter_measures_over_its_window_and_restarts_when_a_counter_drops():
    clock = Clock()
    meter = RateMeter(window=5.0, clock=clock)
    assert meter.update("a", 10) is None
    clock.now += 1
    assert meter.update("a", 30) == pytest.approx(20.0)
    for _ in range(10):
        clock.now += 1
        rate = meter.update("a", 30 + 5 * (clock.now - 101))
    assert rate == pytest.approx(5.0)  # the burst fell out of the window
    clock.now += 1
    assert meter.update("a", 3) is None  # the node server restarted
    meter.forget(set())
    assert meter.update("a", 4) is None


def test_node_server_and_rule_server_documents():
    state = parse_node_status({"nodeID": "pc:1:2", "tasksCompleted": 7, "workers": [
        {"pid": 11, "state": "busy", "task": "r~3", "tasksDone": 4}, {"pid": 12, "state": "idle"}, "junk"]})
    assert state.node_id == "pc:1:2" and state.tasks_completed == 7
    assert [(w.pid, w.state, w.task, w.tasks_done) for w in state.workers] == [(11, "busy", "r~3", 4),
                                                                            (12, "idle", None, 0)]
    node = NodeSnapshot(url="u", name="n", attached=False, health="healthy", reason="", workers=state.workers
                        + (WorkerState(13, "idle", None, 0, 0, 0), WorkerState(14, "odd", None, 0, 0, 0)))
    assert node.workers_text == "1 busy, 2 idle, 1 odd"
    clock = Clock()
    meter = RateMeter(clock=clock)
    doc = {"nodes": [{"nodeID": "pc:1:2", "address": "127.0.0.1", "alive": True, "lastSeen": 0.4,
                      "tasksAssigned": 9, "tasksCompleted": 5, "tasksFailed": 1}]}
    (first,) = parse_rule_nodes(doc, meter)
    assert (first.assigned, first.completed, first.failed, first.tasks_per_s) == (9, 5, 1, None)
    clock.now += 2
    doc["nodes"][0]["tasksCompleted"] = 15
    assert parse_rule_nodes(doc, meter)[0].tasks_per_s == pytest.approx(5.0)


def test_agent_documents_become_rows_and_histories():
    status = {"host": "pc", "services": [
        {"name": "dataserver", "state": "ready", "pid": 5, "url": "http://127.0.0.1:1/", "restarts": 2,
         "since": 90.0, "reason": ""},
        {"name": "nodeserver", "state": "failed", "pid": None, "url": None, "restarts": 6, "since": 80.0,
         "reason": "crashed"}]}
    ds, ns = agent_services(status, "pc", "http://a:1/", now=100.0)
    assert (ds.state, ds.pid, ds.uptime_s, ds.restarts, ds.node, ds.node_url) == ("ready", 5, 10.0, 2, "pc", "http://a:1/")
    assert (ns.state, ns.uptime_s, ns.url, ns.message) == ("failed", None, "", "crashed")
    host = host_history([{"cpu_percent": 10, "memory_percent": 50, "net_recv": 1, "net_send": 2},
                         {"cpu_percent": None}])
    assert host["cpu"][0] == 10 and math.isnan(host["cpu"][1]) and host["net_out"][0] == 2
    gpus = gpu_history([{"gpus": [{"index": 0, "utilization_percent": 5}]},
                        {"gpus": [{"index": 0, "utilization_percent": 6}, {"index": 1, "power_w": 70}]}])
    assert gpus["gpu0.utilization"] == [5, 6]
    assert math.isnan(gpus["gpu1.power"][0]) and gpus["gpu1.power"][1] == 70
    assert all(len(v) == 2 for v in gpus.values())


def test_attached_nodes_keep_tokens_private_and_read_the_old_list_of_urls(tmp_path):
    path = tmp_path / "cfg" / "nodes.json"
    path.parent.mkdir()
    path.write_text(json.dumps(["http://old:15348/"]))
    nodes = AttachedNodes(path)
    assert [(n.url, n.kind, n.token) for n in nodes.nodes()] == [("http://old:15348/", DATASERVER, "")]
    nodes.add("agent:15349", AGENT, "tok")
    nodes.add("http://agent:15349", AGENT, "tok2")  # same node again: replaced, not doubled
    assert json.loads(path.read_text()) == [{"url": "http://old:15348/", "kind": "dataserver"},
                                            {"url": "http://agent:15349/", "kind": "agent", "token": "tok2"}]
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AttachedNodes(path)
    assert again.get("http://agent:15349/").token == "tok2"
    again.remove("http://old:15348/")
    assert AttachedNodes(path).urls() == ["http://agent:15349/"]


def test_a_data_server_is_not_an_agent_and_a_dead_agent_is_unreachable(data_root, tmp_path):
    with DataServer(data_root) as server:
        with pytest.raises(NotAnAgent):
            AgentClient(server.url).status()
        url = server.url
    attached = AttachedNodes(None)
    attached.add(url, AGENT, "t")
    snap = NodesModel(None, attached, status_timeout=0.5).read()
    (node,) = snap.nodes
    assert (node.kind, node.health) == (AGENT, "unreachable") and "cannot connect" in node.reason


def test_an_in_process_agent_read_through_the_model(data_root, tmp_path):
    pytest.importorskip("pyme_desk.supervisor")
    from pyme_desk.supervisor import Supervisor, cluster_services
    from pyme_desk.supervisor.agent import NodeAgent

    supervisor = Supervisor(data_root, cluster_services(data_root)[:1], state_dir=tmp_path / "state",
                            log_dir=tmp_path / "logs")
    with NodeAgent(supervisor, "right", port=0, advertise="none", metrics_interval=0.1) as agent:
        assert supervisor.wait_ready(15)
        with pytest.raises(TokenRefused, match="refused the token"):
            AgentClient(agent.url, "wrong").check_token()
        AgentClient(agent.url, "right").check_token()
        attached = AttachedNodes(None)
        attached.add(agent.url, AGENT, "right")
        model = NodesModel(None, attached)
        first = model.read().by_url(agent.url)
        assert first.kind == AGENT and first.health == "healthy", first.reason
        assert [s.name for s in first.services] == ["dataserver"] and first.services[0].pid
        assert first.disk_total > 0 and len(first.history["cpu"]) >= 1
        assert first.gpu.available or first.gpu.reason
        n = len(first.history["cpu"])
        time.sleep(0.35)
        assert len(model.read().by_url(agent.url).history["cpu"]) > n  # only new samples are added
