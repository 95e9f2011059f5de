"""A second node, run by a real node agent (``pyme-desk node``) in a subprocess, driven from the
window: discovered, attached by URL and token, its services stopped, its metrics shown, its
death seen, detached; every process it started is gone at the end."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import psutil
import pytest

from pyme_desk.model.agents import AgentClient

pytest.importorskip("pyme_desk.supervisor")

WAIT_MS = 20000
TOKEN = "agent-test-token-5d1"


def column(table, col):
    return [table.item(r, col).text() if table.item(r, col) else "" for r in range(table.rowCount())]


@pytest.fixture
def agent_process(tmp_path):
    """``pyme-desk node`` on 127.0.0.1 (data, rule and node server, one worker), not yet waited for."""
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    port_file = tmp_path / "agent.json"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "agent-state"), LOCALAPPDATA=str(tmp_path / "agent-state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyme_desk", "node", "--port", "0", "--port-file", str(port_file),
         "--token-file", str(token_file), "--root", str(tmp_path / "agent-data"), "--workers", "1",
         "--log-dir", str(tmp_path / "agent-logs")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    tree: list[psutil.Process] = []
    proc.port_file, proc.tree = port_file, tree
    yield proc
    if proc.poll() is None:
        tree += psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs([p for p in tree if p.is_running()], timeout=10)
    for p in alive:
        p.kill()
    assert not alive, f"processes outlived their node agent: {alive}"


def wait_for_agent(proc, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not proc.port_file.exists():
        assert proc.poll() is None, "the node agent exited at start"
        assert time.monotonic() < deadline, "the node agent did not start"
        time.sleep(0.05)
    return json.loads(proc.port_file.read_text(encoding="utf-8"))["url"]


@pytest.mark.parametrize("desk", ["local"], indirect=True)
def test_a_node_agent_is_found_attached_controlled_and_seen_dying(qtbot, agent_process, window, desk, tmp_path):
    url = wait_for_agent(agent_process)
    agent = AgentClient(url, TOKEN, timeout=5)
    nodes, services = window.panels["nodes"], window.panels["services"]

    def node_row():
        addresses = column(nodes.table, 1)
        return addresses.index(url) if url in addresses else None

    def agent_states():
        return {s.name: s.state for s in services.services() if s.node_url == url}

    # found on this machine (sqlite registry) before anyone attached it; reads are open on loopback
    qtbot.waitUntil(lambda: node_row() is not None, timeout=WAIT_MS)
    assert nodes.table.item(node_row(), 0).text().endswith(" (agent)")

    # a wrong token is refused with a readable message, and nothing is remembered
    nodes.address.setText(url)
    nodes.token.setText("not-the-token")
    nodes.attach()
    qtbot.waitUntil(lambda: nodes.message.text().startswith("cannot attach:"), timeout=WAIT_MS)
    assert "refused the token" in nodes.message.text() and "Traceback" not in nodes.message.text()
    assert desk.attached.urls() == []

    nodes.token.setText(TOKEN)
    nodes.attach()
    qtbot.waitUntil(lambda: nodes.message.text() == f"attached {url} (node agent)", timeout=WAIT_MS)
    assert nodes.token.text() == ""
    saved = tmp_path / "nodes.json"
    assert json.loads(saved.read_text()) == [{"url": url, "kind": "agent", "token": TOKEN}]
    if os.name == "posix":
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    qtbot.waitUntil(lambda: node_row() is not None and nodes.table.item(node_row(), 0).text().endswith(" (agent, attached)"),
                    timeout=WAIT_MS)

    # its services, its log, its host metrics, its workers, its GPU state
    qtbot.waitUntil(lambda: agent_states() == {"dataserver": "ready", "ruleserver": "ready",
                                               "nodeserver": "ready"}, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(desk.latest("nodes").value.by_url(url).workers), timeout=WAIT_MS)
    node = desk.latest("nodes").value.by_url(url)
    assert node.health == "healthy" and node.disk_total > 0 and len(node.history["cpu"]) >= 1
    qtbot.waitUntil(lambda: nodes.table.item(node_row(), 8).text().endswith(("idle", "busy", "starting")),
                    timeout=WAIT_MS)
    assert nodes.table.item(node_row(), 3).text().endswith("%")
    gpu = window.panels["gpu"]
    window.tabs.setCurrentWidget(gpu)
    qtbot.waitUntil(lambda: gpu.node.findData(url) >= 0, timeout=WAIT_MS)
    gpu.node.setCurrentIndex(gpu.node.findData(url))
    if node.gpu.available:
        qtbot.waitUntil(lambda: len(gpu.cards) == len(node.gpu.devices), timeout=WAIT_MS)
    else:
        assert gpu.message.text().startswith("no GPU on this node: ")
    window.tabs.setCurrentWidget(services)
    services.select("dataserver", url)
    qtbot.waitUntil(lambda: "data server ready at" in services.log.plain_text(), timeout=WAIT_MS)
    for table in (nodes.table, nodes.rules, services.table):
        for r in range(table.rowCount()):
            assert all(TOKEN not in (table.item(r, c).text() if table.item(r, c) else "")
                       for c in range(table.columnCount()))

    # stop one of its services from the window; the agent itself says it stopped
    services.buttons["stop"].click()
    qtbot.waitUntil(lambda: services.message.text() == f"stop dataserver on {url}: done", timeout=WAIT_MS)
    assert {s["name"]: s["state"] for s in agent.status()["services"]}["dataserver"] == "stopped"
    qtbot.waitUntil(lambda: agent_states().get("dataserver") == "stopped", timeout=WAIT_MS)

    # the agent dies: its row turns unreachable, its services too; all its processes are gone
    agent_process.tree += psutil.Process(agent_process.pid).children(recursive=True)
    agent_process.terminate()
    agent_process.wait(30)
    qtbot.waitUntil(lambda: nodes.table.item(node_row(), 2).text().startswith("unreachable"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: set(agent_states().values()) == {"unreachable"}, timeout=WAIT_MS)
    _, alive = psutil.wait_procs([p for p in agent_process.tree if p.is_running()], timeout=10)
    assert not alive

    # detach: gone from the table and from the file (once discovery no longer lists it)
    qtbot.waitUntil(lambda: desk._agent_browser.services() == [], timeout=WAIT_MS)
    nodes.table.selectRow(node_row())
    nodes.detach()
    qtbot.waitUntil(lambda: node_row() is None, timeout=WAIT_MS)
    assert desk.attached.urls() == [] and json.loads(saved.read_text()) == []
    assert not any(s.node_url == url for s in services.services())
