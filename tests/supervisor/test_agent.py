"""The node agent's control API on 127.0.0.1 over a real supervised data server."""
from __future__ import annotations


import pytest
import requests

from pyme_desk.discovery.sqlite_registry import SqliteRegistry
from pyme_desk.errors import UsageError
from pyme_desk.supervisor.agent import AGENT_PROTOCOL, NodeAgent

from .conftest import wait_for

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def agent(make_supervisor, data_root, data_only):
    sv = make_supervisor(data_root, data_only, start=False)
    a = NodeAgent(sv, TOKEN, port=0, metrics_interval=0.2).start()
    assert sv.wait_ready(15)
    yield a
    a.stop()


def call(agent, endpoint, headers=None, **params):
    return requests.post(agent.url + endpoint, params=params, headers=headers or {}, timeout=15)


def test_read_only_calls_are_open_on_loopback(agent):
    status = call(agent, "agent/status").json()
    assert [s["name"] for s in status["services"]] == ["dataserver"]
    assert status["services"][0]["state"] == "ready"
    assert call(agent, "agent/services").json()[0]["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_mutating_calls_need_the_right_token(agent, headers):
    pid = agent.supervisor.snapshot().service("dataserver").pid
    r = call(agent, "agent/stop", headers, service="dataserver")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert agent.supervisor.snapshot().service("dataserver").pid == pid


def test_stop_start_restart_round_trip(agent):
    first = agent.supervisor.snapshot().service("dataserver")
    r = call(agent, "agent/stop", AUTH, service="dataserver")
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    assert call(agent, "agent/status").json()["services"][0]["state"] == "stopped"
    assert call(agent, "agent/start", AUTH, service="dataserver").json()["state"] == "starting"
    ready = agent.supervisor.wait_for("dataserver", ["ready"], 10)
    assert ready.state == "ready" and ready.pid != first.pid
    assert call(agent, "agent/restart", AUTH, service="dataserver").status_code == 200
    again = agent.supervisor.wait_for("dataserver", ["ready"], 10)
    assert again.pid not in (first.pid, ready.pid) and again.url == first.url
    assert call(agent, "agent/stop", AUTH, service="nope").status_code == 404
    assert call(agent, "agent/stop", AUTH).status_code == 400


def test_log_tail(agent):
    lines = call(agent, "agent/log", service="dataserver", lines=50).json()["lines"]
    assert any("[supervisor] data server ready at" in ln for ln in lines)
    assert len(call(agent, "agent/log", service="dataserver", lines=1).json()["lines"]) == 1
    assert call(agent, "agent/log", service="nope").status_code == 404
    assert call(agent, "agent/log", service="dataserver", lines=-1).status_code == 400


def test_metrics_keep_a_history(agent):
    wait_for(lambda: len(call(agent, "agent/metrics/host").json()["history"]) >= 2, 5, "two host samples")
    host = call(agent, "agent/metrics/host").json()
    assert 0 <= host["latest"]["cpu_percent"] <= 100 and host["latest"]["disk_total"] > 0
    newest = host["history"][-1]["t"]
    assert call(agent, "agent/metrics/host", since=newest).json()["history"] == []
    gpu = call(agent, "agent/metrics/gpu").json()
    assert isinstance(gpu["available"], bool) and gpu["reason"]


def test_advertised_on_this_machine(agent):
    names = [r.name for r in SqliteRegistry(AGENT_PROTOCOL).services() if r.port == agent.port]
    assert len(names) == 1 and names[0].startswith("PYMEDeskNode:")


def test_an_empty_token_is_refused(make_supervisor, data_root, data_only):
    with pytest.raises(UsageError, match="needs a cluster token"):
        NodeAgent(make_supervisor(data_root, data_only, start=False), "")
