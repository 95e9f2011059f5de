"""Rule server, node servers and workers together, as real servers and processes on loopback."""
from __future__ import annotations

from collections import Counter

import psutil
import pytest

from pyme_desk.node.server import NodeServer
from pyme_desk.storage.server import DataServer

from .conftest import (NodeProcess, add_rule, node_status, noop_template, rule_info, rule_server, rule_status,
                       wait_finished, wait_for, wait_gone)


@pytest.fixture
def ruleserver():
    rs = rule_server().start()
    yield rs
    rs.stop()


def polling(node_url: str) -> bool:
    return node_status(node_url)["Polling"]


def test_ten_thousand_tasks_complete_exactly_once_on_two_nodes(ruleserver):
    nodes = [NodeServer(ruleserver=ruleserver.url, workers=2).start() for _ in range(2)]
    try:
        rule_id = add_rule(ruleserver.url, 10_000)
        info = wait_finished(ruleserver.url, rule_id, 60)
        assert (info["tasksCompleted"], info["tasksFailed"], info["tasksTimedOut"]) == (10_000, 0, 0)
        assert rule_status(ruleserver.url, rule_id)["duplicateHandins"] == 0
        ran = [node_status(n.url)["tasksCompleted"] for n in nodes]
        assert sum(ran) == 10_000 and min(ran) > 0  # each task ran once, on both nodes
    finally:
        for n in nodes:
            n.stop()


def test_a_killed_worker_and_a_killed_node_lose_no_task(ruleserver, tmp_path, procs):
    node_a = NodeServer(ruleserver=ruleserver.url, workers=2).start()
    node_b = NodeProcess(tmp_path, "--ruleserver", ruleserver.url, "--workers", "2", "--root", str(tmp_path / "b"),
                         "--advertise", "none", name="b")
    procs.append(node_b)
    try:
        n = 600
        rule_id = add_rule(ruleserver.url, n, noop_template(taskdef={"sleep": 0.01}))
        wait_for(lambda: node_status(node_b.url)["tasksCompleted"] >= 20, 20, "node B to run tasks")
        busy = wait_for(lambda: [w for w in node_status(node_a.url)["workers"] if w["state"] == "busy"], 10,
                        "a busy worker on node A")
        b_workers = node_b.worker_pids()
        assert len(b_workers) == 2
        psutil.Process(busy[0]["pid"]).kill()
        node_b.proc.kill()
        wait_gone(b_workers, 10)  # the dead node's workers noticed and exited
        info = wait_finished(ruleserver.url, rule_id, 40)
        assert (info["tasksCompleted"], info["tasksFailed"]) == (n, 0)
        rerun_after_node_loss = info["tasksTimedOut"]
        rerun_after_worker_loss = node_status(node_a.url)["tasksRequeued"]
        print(f"re-run: {rerun_after_node_loss} tasks of the killed node, "
              f"{rerun_after_worker_loss} of the killed worker")
        # the dead node surely held tasks; the killed worker may have just handed its task in
        # (its status said busy a moment before), so its re-run count is reported, not asserted
        assert rerun_after_node_loss >= 1 and rerun_after_worker_loss >= 0
        assert node_status(node_a.url)["workers"][0]["restarts"] + node_status(node_a.url)["workers"][1]["restarts"] == 1
    finally:
        node_a.stop()


def test_a_node_started_first_finds_the_rule_server_when_it_comes_up(tmp_path, procs):
    node = NodeProcess(tmp_path, "--ruleserver", "auto", "--workers", "1", "--advertise", "local",
                       "--root", str(tmp_path / "root"))
    procs.append(node)
    assert not node_status(node.url)["connected"]
    rs = rule_server(advertise="local").start()
    try:
        rule_id = add_rule(rs.url, 50)
        wait_finished(rs.url, rule_id, 20)
        assert node_status(node.url)["ruleServer"] == rs.url
    finally:
        code, err = node.terminate()
        rs.stop()
    assert code == 0, err


def test_a_restarted_rule_server_is_found_again_and_the_rule_resumes(tmp_path):
    journal = tmp_path / "rules.sqlite"
    rs = rule_server(advertise="local", journal=journal).start()
    node = NodeServer(ruleserver="auto", workers=2, advertise="local").start()
    try:
        n = 1500
        rule_id = add_rule(rs.url, n, noop_template(taskdef={"sleep": 0.002}))
        wait_for(lambda: rule_info(rs.url, rule_id)["tasksCompleted"] >= 200, 20, "the rule to get going")
        rs.sync_journal()
        old_url = rs.url
        rs.stop()
        rs = rule_server(advertise="local", journal=journal).start()  # a new port: found by discovery
        assert rs.url != old_url
        info = wait_finished(rs.url, rule_id, 40)
        assert (info["tasksCompleted"], info["tasksFailed"]) == (n, 0)
        assert node_status(node.url)["ruleServer"] == rs.url
    finally:
        node.stop()
        rs.stop()


def test_tasks_run_on_the_node_that_holds_their_frames(tmp_path, ruleserver):
    """Three data servers each hold a third of a series (in chunks of 10 frames, as the spooler
    spreads them); three node servers each on one of those roots."""
    n_frames, chunk = 150, 10
    dataservers = [DataServer(tmp_path / f"root{i}", server_filter="loc").start() for i in range(3)]
    nodes = []
    try:
        for i in range(n_frames):
            series = dataservers[(i // chunk) % 3].root.path / "series"
            series.mkdir(exist_ok=True)
            (series / f"frame{i:05d}.pzf").write_bytes(b"frame")
        urls = [d.url for d in dataservers]
        nodes = [NodeServer(ruleserver=ruleserver.url, workers=1, data_root=d.root.path, server_filter="loc",
                            servers=urls).start() for d in dataservers]
        for node in nodes:
            wait_for(lambda: polling(node.url), 10, "the node to reach the rule server")
        log_url = urls[0] + "__aggregate_txt/runs.txt"
        template = noop_template(taskdef={"frameIndex": "{{taskID}}"}, inputs={"frames": "PYME-CLUSTER://loc/series"},
                                 outputs={"log": log_url})
        rule_id = add_rule(ruleserver.url, n_frames, template)
        info = wait_finished(ruleserver.url, rule_id, 30)
        assert info["tasksCompleted"] == n_frames
        lines = (dataservers[0].root.path / "runs.txt").read_text().split()
        ran_on = dict(zip(lines[0::2], lines[1::2]))
        assert len(ran_on) == n_frames
        node_of = {node.node_id: i for i, node in enumerate(nodes)}
        local = sum(node_of[ran_on[f"{rule_id}~{i}"]] == (i // chunk) % 3 for i in range(n_frames))
        print(f"{local} of {n_frames} tasks ran on the node holding their frame; per node: "
              f"{Counter(node_of[v] for v in ran_on.values())}")
        assert local >= 0.9 * n_frames
    finally:
        for node in nodes:
            node.stop()
        for d in dataservers:
            d.stop()
