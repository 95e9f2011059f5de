"""A stopping node gives the tasks it won but never started back to the rule server at once."""
from __future__ import annotations

import time

from pyme_desk.node.server import NodeServer

from .conftest import add_rule, call, node_status, noop_template, rule_info, rule_server, rule_status, wait_finished, wait_for


def assigned_to(url: str, node_id: str) -> int:
    return next(n["tasksAssigned"] for n in call(url, "status")["nodes"] if n["nodeID"] == node_id)


def test_a_node_stopped_mid_rule_gives_its_queue_back_and_no_task_fails():
    # no retries and a lease longer than the stop: a task left to the lease would be FAILED
    rs = rule_server(retries=0, node_timeout=5.0).start()
    node_a = NodeServer(ruleserver=rs.url, workers=1, chunk_size=300).start()
    node_b = None
    try:
        n = 600
        rule_id = add_rule(rs.url, n, noop_template(taskdef={"sleep": 0.005}))
        wait_for(lambda: (lambda d: d["nQueued"] >= 100 and d["tasksCompleted"] >= 5)(node_status(node_a.url)),
                 20, "node A to run tasks with a big queue")
        node_b = NodeServer(ruleserver=rs.url, workers=2).start()
        t = time.monotonic()
        node_a.stop()
        stop_s = time.monotonic() - t
        assert node_a.tasks_returned >= 50
        assert assigned_to(rs.url, node_a.node_id) == 0  # given back, not left to the lease
        assert rule_info(rs.url, rule_id)["tasksTimedOut"] == 0
        info = wait_finished(rs.url, rule_id, 30)
        assert (info["tasksCompleted"], info["tasksFailed"], info["tasksTimedOut"]) == (n, 0, 0)
        assert rule_status(rs.url, rule_id)["duplicateHandins"] == 0
        print(f"node A stopped in {stop_s:.2f} s and gave back {node_a.tasks_returned} tasks")
    finally:
        node_a.stop()
        if node_b is not None:
            node_b.stop()
        rs.stop()


def test_a_node_that_cannot_reach_the_rule_server_on_stop_still_stops():
    rs = rule_server().start()
    node = NodeServer(ruleserver=rs.url, workers=1, chunk_size=100, drain_timeout=0.2).start()
    try:
        add_rule(rs.url, 300, noop_template(taskdef={"sleep": 0.02}))
        wait_for(lambda: node_status(node.url)["nQueued"] >= 50, 20, "the node to queue tasks")
    finally:
        rs.stop()
    t = time.monotonic()
    node.stop(flush_timeout=0.5)
    assert node.tasks_returned == 0
    assert time.monotonic() - t < 10
