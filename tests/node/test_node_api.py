"""The node server's worker API (§8.3) as PYME's workers use it, and hand-ins kept until delivered."""
from __future__ import annotations

import threading
import time

import pytest
import requests

from pyme_desk.node.server import NodeServer

from .conftest import add_rule, free_port, node_status, rule_info, rule_server, wait_for


@pytest.fixture
def node():
    n = NodeServer(ruleserver=f"http://127.0.0.1:{free_port()}/", workers=0, worker_get_timeout=3.0).start()
    yield n
    n.stop(grace=1.0, flush_timeout=0.2)  # no rule server to hand in to


def get(node, endpoint, **params):
    return requests.get(node.url + endpoint, params=params, timeout=10)


def test_status_has_pymes_shape_plus_ours(node):
    doc = get(node, "node/status").json()
    assert doc["Polling"] is False and doc["nQueued"] == 0
    assert doc["nodeID"] == node.node_id and doc["workers"] == [] and doc["connected"] is False


def test_long_poll_waits_without_blocking_other_requests(node):
    answers = []
    t = threading.Thread(target=lambda: answers.append(get(node, "node/tasks", workerID="w_1", numWant=5)))
    t.start()
    time.sleep(0.3)
    assert get(node, "node/status").status_code == 200
    assert not answers  # answered while the long-poll still waits: it does not hold the loop
    node.queue.put([{"id": "r~0", "type": "noop"}, {"id": "r~1", "type": "noop"}])
    t.join(5)
    assert answers and answers[0].json() == {"ok": True, "result": [{"id": "r~0", "type": "noop"},
                                                                    {"id": "r~1", "type": "noop"}]}
    worker = get(node, "node/status").json()["workers"][0]
    assert worker["workerID"] == "w_1" and worker["state"] == "busy" and worker["task"] == "r~0"


def test_long_poll_returns_empty_after_the_time_out():
    n = NodeServer(ruleserver=f"http://127.0.0.1:{free_port()}/", workers=0, worker_get_timeout=0.3).start()
    try:
        started = time.monotonic()
        assert get(n, "node/tasks", workerID="w_1").json() == {"ok": True, "result": []}
        assert 0.25 < time.monotonic() - started < 2
    finally:
        n.stop()


def test_take_honours_num_want_and_optimal_chunk_size(node):
    node.queue.put([{"id": f"r~{i}", "optimal-chunk-size": 2} for i in range(5)])
    assert [t["id"] for t in get(node, "node/tasks", workerID="a_1", numWant=10).json()["result"]] == ["r~0", "r~1"]
    node.queue.put([{"id": f"q~{i}"} for i in range(5)])
    assert len(get(node, "node/tasks", workerID="a_1", numWant=1).json()["result"]) == 1


def test_hand_ins_by_query_and_by_batch_are_counted_and_kept_for_the_rule_server(node):
    node.queue.put([{"id": f"r~{i}"} for i in range(4)])
    get(node, "node/tasks", workerID="a_1", numWant=4)
    assert get(node, "node/handin", taskID="r~0", status="success").json() == {"ok": True}
    r = requests.post(node.url + "node/handin", params={"workerID": "a_1"}, timeout=5,
                      json=[{"taskID": "r~1", "status": "success"},
                            {"taskID": "r~2", "status": "failure", "reason": "bad frame"}])
    assert r.json() == {"ok": True}
    doc = get(node, "node/status").json()
    assert (doc["tasksCompleted"], doc["tasksFailed"], doc["handinsPending"]) == (2, 1, 3)
    worker = doc["workers"][0]
    assert (worker["tasksDone"], worker["errors"], worker["tasksHeld"], worker["task"]) == (2, 1, 1, "r~3")


@pytest.mark.parametrize("params,body", [
    ({"taskID": "r~0", "status": "done"}, None),
    ({"taskID": "no-tilde", "status": "success"}, None),
    ({}, b"{not json"),
    ({}, b'{"taskID": "r~0"}'),
    ({}, b'[{"taskID": 5, "status": "success"}]'),
    ({}, b'[{"taskID": "r~0", "status": "success"}, {"taskID": "r~1", "status": "maybe"}]'),
])
def test_malformed_hand_ins_are_400_with_a_reason_and_change_nothing(node, params, body):
    r = requests.post(node.url + "node/handin", params=params, data=body, timeout=5)
    assert r.status_code == 400 and r.json()["error"]
    assert get(node, "node/status").json()["handinsPending"] == 0


def test_bad_num_want_and_unknown_paths_are_4xx(node):
    assert get(node, "node/tasks", numWant="many").status_code == 400
    assert get(node, "node/tasks", numWant=0).status_code == 400
    assert get(node, "node/nothing").status_code == 404


def test_hand_ins_survive_a_rule_server_outage(tmp_path):
    """Tasks won, rule server gone, workers hand in: the hand-ins wait and are delivered later."""
    port = free_port()
    journal = tmp_path / "rules.sqlite"
    rs = rule_server(port=port, journal=journal).start()
    n = NodeServer(ruleserver=rs.url, workers=0, worker_get_timeout=2.0).start()
    try:
        rule_id = add_rule(rs.url, 5)
        tasks = wait_for(lambda: get(n, "node/tasks", workerID="w_1", numWant=5).json()["result"], 10,
                         "the node to win the tasks")
        assert len(tasks) == 5
        rs.sync_journal()
        rs.stop()
        for task in tasks:
            assert get(n, "node/handin", taskID=task["id"], status="success").status_code == 200
        time.sleep(0.5)
        assert node_status(n.url)["handinsPending"] == 5  # kept while the rule server is away
        rs = rule_server(port=port, journal=journal).start()
        wait_for(lambda: node_status(n.url)["handinsPending"] == 0, 15, "the hand-ins to be delivered")
        info = rule_info(rs.url, rule_id)
        assert info["tasksCompleted"] == 5 and info["finished"]
    finally:
        n.stop()
        rs.stop()
