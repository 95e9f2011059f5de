"""Leases, time-outs, retries and exactly-once counting, with short intervals."""
from __future__ import annotations

import time

import pytest

from tests.helpers import wait_for


@pytest.fixture
def fast(launch):
    """A server with a 0.5 s node lease, 1 s task time-out and one retry."""
    return launch(node_timeout=0.5, task_timeout=1.0, retries=1)


def test_tasks_of_a_node_that_stops_heart_beating_are_requeued_within_the_lease(launch):
    connect = launch(node_timeout=0.5, task_timeout=60.0)
    poster, dead, alive = connect(), connect("dead"), connect("alive")
    rule_id = poster.add_rule(20)
    dead.call("/node_heartbeat")
    alive.call("/node_heartbeat")
    assert dead.bid(rule_id, range(10)) == list(range(10))
    assert alive.bid(rule_id, range(10, 20)) == list(range(10, 20))
    t = time.monotonic()
    while time.monotonic() - t < 1.5:  # only "alive" keeps heart-beating
        alive.call("/node_heartbeat")
        time.sleep(0.1)
    info = poster.info(rule_id)
    assert info["tasksTimedOut"] == 10 and info["tasksRunning"] == 10
    assert poster.call("/task_advertisements")[0]["availableTaskIDs"] == list(range(10))
    status = {n["nodeID"]: n for n in poster.call("/status")["nodes"]}
    assert status["dead"]["alive"] is False and status["dead"]["tasksAssigned"] == 0
    assert status["alive"]["alive"] is True and status["alive"]["tasksAssigned"] == 10


def test_a_lost_lease_is_noticed_promptly(launch):
    connect = launch(node_timeout=0.3, task_timeout=60.0)
    poster, node = connect(), connect("n")
    rule_id = poster.add_rule(3)
    node.call("/node_heartbeat")
    node.bid(rule_id, range(3))
    t = time.monotonic()
    wait_for(lambda: poster.info(rule_id)["tasksTimedOut"] == 3)
    assert time.monotonic() - t < 0.3 + 0.5  # lease + a sweep or two


def test_tasks_of_lost_nodes_fail_after_the_retries_with_that_reason(launch):
    connect = launch(node_timeout=0.2, task_timeout=60.0, retries=0)
    poster, node = connect(), connect("n")
    rule_id = poster.add_rule(2)
    node.call("/node_heartbeat")
    node.bid(rule_id, range(2))
    wait_for(lambda: poster.info(rule_id)["tasksFailed"] == 2)
    assert poster.call("/status")["rules"][0]["failureReasons"] == {
        "its node stopped heart-beating too often (retry limit 0)": 2}


def test_nodes_without_heartbeats_lose_tasks_only_by_the_task_timeout(fast):
    poster, pyme_node = fast(), fast()
    rule_id = poster.add_rule(5)
    pyme_node.bid(rule_id, range(5))
    time.sleep(0.7)  # past the node lease, before the task time-out
    assert poster.info(rule_id)["tasksRunning"] == 5
    info = wait_for(lambda: (i := poster.info(rule_id))["tasksTimedOut"] and i, timeout=3)
    assert info["tasksTimedOut"] == 5 and info["tasksRunning"] == 0


def test_retries_then_failed_with_a_reason(fast):
    poster, node = fast(), fast("flaky")
    rule_id = poster.add_rule(3)
    poster.call("/mark_release_complete", ruleID=rule_id)
    for attempt in range(2):  # retries=1: the second time-out fails the tasks
        wait_for(lambda: node.bid(rule_id, range(3)) == [0, 1, 2])
        wait_for(lambda: poster.info(rule_id)["tasksRunning"] == 0, timeout=3)
    info = poster.info(rule_id)
    assert info["tasksFailed"] == 3 and info["tasksTimedOut"] == 6 and info["finished"] is True
    rule = poster.call("/status")["rules"][0]
    assert rule["failureReasons"] == {"timed out too often (retry limit 1)": 3}


def test_worker_failures_are_final_and_their_reasons_kept(fast):
    poster, node = fast(), fast("n")
    rule_id = poster.add_rule(2)
    node.bid(rule_id, [0, 1])
    node.call("/handin", [{"ruleID": rule_id, "taskIDs": [0, 1], "status": [4, 3], "reasons": ["no such file", None]}])
    rule = poster.call("/status")["rules"][0]
    assert rule["tasksFailed"] == 1 and rule["tasksCompleted"] == 1
    assert rule["failureReasons"] == {"the worker reported a failure": 1}
    assert rule["failureNotes"] == [{"taskID": 0, "reason": "no such file"}]


def test_every_task_counted_once_whatever_the_order_of_late_handins(fast):
    poster, slow, quick = fast(), fast("slow"), fast("quick")
    rule_id = poster.add_rule(6)
    poster.call("/mark_release_complete", ruleID=rule_id)
    slow.call("/node_heartbeat")
    assert slow.bid(rule_id, range(6)) == list(range(6))
    wait_for(lambda: poster.info(rule_id)["tasksTimedOut"] == 6)  # slow's lease lapsed
    # 0, 1: the late node hands in before anyone else takes them -> complete after time-out
    slow.handin(rule_id, [0, 1])
    # 2, 3: re-assigned to quick; slow's late success still completes them, quick's is a duplicate
    assert quick.bid(rule_id, [2, 3, 4, 5]) == [2, 3, 4, 5]
    slow.handin(rule_id, [2, 3])
    quick.handin(rule_id, [2, 3])
    # 4: slow's late failure is ignored while quick runs it; quick's success counts
    slow.handin(rule_id, [4], status=4)
    quick.handin(rule_id, [4])
    # 5: quick fails it; slow's late success afterwards is a duplicate
    quick.handin(rule_id, [5], status=4)
    slow.handin(rule_id, [5])
    slow.handin(rule_id, [0, 1, 2])  # repeated hand-ins change nothing
    info = poster.info(rule_id)
    assert info["tasksCompleted"] == 5 and info["tasksFailed"] == 1
    assert info["tasksCompleted"] + info["tasksFailed"] == 6 and info["tasksRunning"] == 0
    assert info["tasksCompleteAfterTimeout"] == 4 and info["finished"] is True
    rule = poster.call("/status")["rules"][0]
    assert rule["duplicateHandins"] == 6 and rule["tasksAvailable"] == 0
    nodes = {n["nodeID"]: n for n in poster.call("/status")["nodes"]}
    assert nodes["quick"]["tasksAssigned"] == 0 and nodes["slow"]["tasksAssigned"] == 0


def test_an_idle_rule_expires_after_its_timeout(fast):
    poster = fast()
    rule_id = poster.add_rule(5, release=False, timeout=0.3)
    assert rule_id in poster.call("/distributor/queues")["result"]
    wait_for(lambda: rule_id not in poster.call("/distributor/queues")["result"], timeout=3)
    assert poster.raw("/release_rule_tasks", ruleID=rule_id, release_start=0, release_end=1).status_code == 404
    assert poster.handin(rule_id, [0])["ok"] == "False"


def test_a_node_coming_back_is_alive_again(fast):
    node = fast("n")
    node.call("/node_heartbeat")
    wait_for(lambda: not {n["nodeID"]: n for n in node.call("/status")["nodes"]}["n"]["alive"])
    node.call("/node_heartbeat")
    assert {n["nodeID"]: n for n in node.call("/status")["nodes"]}["n"]["alive"] is True
