"""``/return_tasks``: a stopping node gives back tasks it won but never ran, with no retry counted."""
from __future__ import annotations

import pytest

from .conftest import Client, make_server
from tests.helpers import wait_for


def give_back(node: Client, rule_id: str, ids) -> dict:
    return node.call("/return_tasks", [{"ruleID": rule_id, "taskIDs": list(ids)}])


def nodes(client: Client) -> dict[str, dict]:
    return {n["nodeID"]: n for n in client.call("/status")["nodes"]}


def test_only_the_tasks_the_node_holds_go_back_and_adverts_stay_oldest_first(client, node_client):
    a, b = node_client("a"), node_client("b")
    rule_id = client.add_rule(10)
    assert a.bid(rule_id, range(6)) == list(range(6))
    assert b.bid(rule_id, [6, 7]) == [6, 7]
    a.handin(rule_id, [0, 1])
    reply = a.call("/return_tasks", [{"ruleID": rule_id, "taskIDs": [3, 2, 2, 0, 1, 6, 8, 99, -1]},
                                     {"ruleID": "no-such-rule", "taskIDs": [1, 2]}])
    # returned: 2, 3; ignored: 0, 1 (handed in), 6 (b's), 8 (never won), 99, -1 (out of range),
    # and the unknown rule's two
    assert reply == {"ok": True, "returned": 2, "ignored": 8, "unknownRules": ["no-such-rule"]}
    info = client.info(rule_id)
    assert (info["tasksRunning"], info["tasksCompleted"], info["tasksTimedOut"]) == (4, 2, 0)
    assert client.call("/task_advertisements")[0]["availableTaskIDs"] == [2, 3, 8, 9]
    assert nodes(client)["a"]["tasksAssigned"] == 2 and nodes(client)["b"]["tasksAssigned"] == 2
    assert a.call("/return_tasks", [{"ruleID": rule_id, "taskIDs": [2, 3]}])["returned"] == 0  # not twice
    assert b.bid(rule_id, [2, 3]) == [2, 3]  # handed out again at once


def test_a_return_counts_no_retry(launch):
    """With one retry allowed, tasks returned twice and then lost once are re-queued, not FAILED."""
    connect = launch(node_timeout=0.3, task_timeout=60.0, retries=1)
    poster, x, y = connect(), connect("x"), connect("y")
    rule_id = poster.add_rule(3)
    x.call("/node_heartbeat")
    for _ in range(2):
        assert x.bid(rule_id, range(3)) == [0, 1, 2]
        assert give_back(x, rule_id, range(3))["returned"] == 3
    y.call("/node_heartbeat")
    assert y.bid(rule_id, range(3)) == [0, 1, 2]
    x.call("/node_heartbeat")  # only x stays alive: y's lease lapses once
    wait_for(lambda: poster.info(rule_id)["tasksTimedOut"] == 3)
    info = poster.info(rule_id)
    assert (info["tasksFailed"], info["tasksRunning"]) == (0, 0)
    assert poster.call("/task_advertisements")[0]["availableTaskIDs"] == [0, 1, 2]


def test_returned_tasks_stay_returned_after_a_restart(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with make_server(journal=journal, journal_interval=60.0) as srv:  # no periodic write meanwhile
        poster, node = Client(f"http://127.0.0.1:{srv.port}"), Client(f"http://127.0.0.1:{srv.port}", "n")
        rule_id = poster.add_rule(6)
        assert node.bid(rule_id, range(5)) == [0, 1, 2, 3, 4]
        assert give_back(node, rule_id, [1, 3])["returned"] == 2
        poster.close()
        node.close()
    with make_server(journal=journal) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        info = c.info(rule_id)
        assert (info["tasksRunning"], info["tasksTimedOut"], info["tasksFailed"]) == (3, 0, 0)
        assert c.call("/task_advertisements")[0]["availableTaskIDs"] == [1, 3, 5]
        assert next(r for r in c.call("/status")["rules"])["nodes"] == {"n": 3}
        c.close()


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b'{"ruleID": "r", "taskIDs": [1]}', "JSON list"),
    (b'[{"taskIDs": [1]}]', "string ruleID"),
    (b'[{"ruleID": "r", "taskIDs": [1.5]}]', "list of integers"),
    (b'[{"ruleID": "r", "taskIDs": "1"}]', "list of integers"),
])
def test_malformed_returns_are_refused(client, node_client, body, words):
    rule_id = client.add_rule(2)
    node = node_client("n")
    node.bid(rule_id, [0, 1])
    r = node.raw("/return_tasks", body, method="POST")
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert words in r.json()["error"]
    assert client.info(rule_id)["tasksRunning"] == 2


def test_a_return_needs_a_node_id(client):
    rule_id = client.add_rule(1)
    for params in ({}, {"nodeID": ""}):
        r = client.raw("/return_tasks", [{"ruleID": rule_id, "taskIDs": [0]}], **params)
        assert r.status_code == 400 and "nodeID" in r.json()["error"]
