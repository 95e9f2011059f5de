"""The whole cluster of one (data → rule → node server) under the supervisor."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from pyme_desk.supervisor import ServiceState

from .conftest import alive, process_tree, wait_for

NOOP = json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop"})


@pytest.fixture
def cluster(make_supervisor, data_root):
    sv = make_supervisor(data_root, workers=1)
    assert sv.wait_ready(30), sv.snapshot()
    return sv


def run_rule(rule_url: str, n: int, timeout: float = 20) -> dict:
    r = requests.post(rule_url + "add_integer_id_rule", params={"max_tasks": n, "release_start": 0, "release_end": n},
                      data=json.dumps({"template": NOOP}), timeout=10)
    assert r.status_code == 200, r.text
    rule_id = r.json()["ruleID"]

    def finished():
        info = requests.get(rule_url + "distributor/queues", timeout=10).json()["result"][rule_id]
        return info if info["finished"] else None
    return wait_for(finished, timeout, f"rule {rule_id} to finish", interval=0.1)


def test_serves_files_and_runs_a_rule_to_the_end(cluster):
    snap = cluster.snapshot()
    data, rule = snap.service("dataserver").url, snap.service("ruleserver").url
    assert requests.put(data + "a/b.txt", data=b"x", timeout=5).status_code == 200
    assert requests.get(data + "a/b.txt", timeout=5).content == b"x"
    info = run_rule(rule, 5)
    assert info["tasksCompleted"] == 5 and info["tasksFailed"] == 0


@pytest.mark.parametrize("name", ["ruleserver", "nodeserver"])
def test_kill_9_of_a_server_restarts_it_within_2_s(cluster, name):
    before = cluster.snapshot().service(name)
    tree = process_tree([before.pid])
    os.kill(before.pid, signal.SIGKILL)
    t0 = time.monotonic()
    after = wait_for(lambda: (lambda s: s if s.state is ServiceState.READY and s.pid != before.pid else None)(
        cluster.snapshot().service(name)), 5, f"the restarted {name}")
    assert time.monotonic() - t0 < 2.0
    assert after.url == before.url
    wait_for(lambda: not alive(tree), 5, "the killed server's workers to be gone")
    info = run_rule(cluster.snapshot().service("ruleserver").url, 3)
    assert info["tasksCompleted"] == 3


def test_a_simulated_series_is_localized_by_the_cluster(cluster):
    """The whole flow through the real commands: simulate → spool → analyse --wait → results."""
    import subprocess
    import sys

    import numpy as np

    from pyme_desk.names import computer_name

    snap = cluster.snapshot()
    data, rule = snap.service("dataserver").url, snap.service("ruleserver").url
    env = dict(os.environ)
    sim = subprocess.run([sys.executable, "-m", "pyme_desk", "simulate", "--series", "t/sim_01", "--frames", "12",
                          "--size", "64", "64", "--fps", "0", "--seed", "3", "--server", data, "--no-progress"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert sim.returncode == 0, sim.stderr
    uri = f"pyme-cluster://{computer_name()}/t/sim_01"
    ana = subprocess.run([sys.executable, "-m", "pyme_desk", "analyse", uri, "--server", data,
                          "--ruleserver", rule, "--fit", "cpu", "--wait"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert ana.returncode == 0, ana.stdout + ana.stderr
    r = requests.get(data + "t/analysis/sim_01.h5r/FitResults.npy", timeout=10)
    assert r.status_code == 200, r.text
    import io
    rows = np.load(io.BytesIO(r.content))
    assert len(rows) > 12 and set(np.unique(rows["tIndex"])) <= set(range(12))


def test_a_member_node_joins_another_nodes_rule_server(cluster, make_supervisor, tmp_path):
    """`pyme-desk node --ruleserver URL`: no rule server of its own; its workers take the cluster's tasks."""
    from pyme_desk.supervisor.services import cluster_services

    rule = cluster.snapshot().service("ruleserver").url
    member_root = tmp_path / "member"
    member = make_supervisor(member_root, cluster_services(member_root, 1, ruleserver=rule),
                             state_dir=tmp_path / "member-state", log_dir=tmp_path / "member-logs")
    assert member.wait_ready(30), member.snapshot()
    assert [s.name for s in member.snapshot().services] == ["dataserver", "nodeserver"]
    node_url = member.snapshot().service("nodeserver").url
    r = requests.post(rule + "add_integer_id_rule", params={"max_tasks": 400, "release_start": 0, "release_end": 400},
                      data=json.dumps({"template": json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop",
                                                              "taskdef": {"sleep": 0.005}})}), timeout=10)
    rule_id = r.json()["ruleID"]
    wait_for(lambda: requests.get(rule + "distributor/queues", timeout=10).json()["result"][rule_id]["finished"],
             60, "the rule to finish", interval=0.2)
    status = requests.get(node_url + "node/status", timeout=10).json()
    assert status["ruleServer"].rstrip("/") == rule.rstrip("/") and status["tasksCompleted"] > 0
