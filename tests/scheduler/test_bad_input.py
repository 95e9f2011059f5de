"""Bad requests get a 4xx with a JSON reason, never a 500, and change nothing."""
from __future__ import annotations

import pytest


def assert_refused(r, status: int, words: str = "") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json"
    assert words in r.json()["error"]


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON"),
    (b"", "needs a JSON body"),
    (b"[1, 2]", "JSON object"),
    (b'{"no_template": 1}', "template must be a string"),
    (b'{"template": {"id": 1}}', "template must be a string"),
    (b'{"template": "t", "inputsByTask": [1]}', "inputsByTask"),
    (b'{"template": "t", "inputsByTask": {"x": {}}}', "integer task IDs"),
    (b'{"template": "t", "on_completion": {"max_tasks": 2}}', "on_completion"),
    (b'{"template": "t", "on_completion": {"template": "c", "max_tasks": "many"}}', "numbers"),
])
def test_bad_rule_bodies(client, body, words):
    assert_refused(client.raw("/add_integer_id_rule", body, max_tasks=10), 400, words)
    assert client.call("/distributor/queues")["result"] == {}


@pytest.mark.parametrize("params, words", [
    ({"max_tasks": "lots"}, "max_tasks"),
    ({"max_tasks": "0"}, "max_tasks"),
    ({"max_tasks": "1.5"}, "max_tasks"),
    ({"max_tasks": "1e12"}, "max_tasks"),
    ({"timeout": "-1"}, "timeout"),
    ({"max_tasks": "10", "release_start": "0"}, "release_end"),
    ({"max_tasks": "10", "release_start": "0", "release_end": "11"}, "outside"),
])
def test_bad_rule_parameters(client, params, words):
    assert_refused(client.raw("/add_integer_id_rule", b'{"template": "t"}', **params), 400, words)
    assert client.call("/distributor/queues")["result"] == {}


def test_pyme_style_numbers_are_accepted(client):
    rule_id = client.call("/add_integer_id_rule", {"template": "t"}, max_tasks="1e6", timeout="300.0")["ruleID"]
    client.call("/release_rule_tasks", ruleID=rule_id, release_start="0", release_end="100.0")
    assert client.info(rule_id)["tasksPosted"] == 100


def test_unknown_rules_are_404(client):
    for path in ("/release_rule_tasks", "/mark_release_complete", "/inactivate_rule"):
        assert_refused(client.raw(path, ruleID="nope", release_start=0, release_end=1), 404, "no such rule")


def test_missing_rule_id_is_400(client):
    for path in ("/release_rule_tasks", "/mark_release_complete", "/inactivate_rule"):
        assert_refused(client.raw(path), 400, "ruleID")


@pytest.mark.parametrize("start, end", [(-1, 5), (5, 4), (0, 11), ("a", 3)])
def test_bad_release_ranges(client, start, end):
    rule_id = client.add_rule(10, release=False)
    assert_refused(client.raw("/release_rule_tasks", ruleID=rule_id, release_start=start, release_end=end), 400)
    assert client.info(rule_id)["tasksPosted"] == 0


def test_bad_n_tasks(client):
    rule_id = client.add_rule(10)
    assert_refused(client.raw("/mark_release_complete", ruleID=rule_id, n_tasks=11), 400, "n_tasks")


@pytest.mark.parametrize("body, words", [
    (b"{bad", "not valid JSON"),
    (b'{"ruleID": "x"}', "JSON list"),
    (b'[{"taskIDs": [1]}]', "string ruleID"),
    (b'[{"ruleID": "R", "taskIDs": "1,2"}]', "list of integers"),
    (b'[{"ruleID": "R", "taskIDs": [1.5]}]', "list of integers"),
    (b'[{"ruleID": "R", "taskIDs": [1, 2], "costs": [0.1]}]', "one per task ID"),
    (b'[{"ruleID": "R", "taskIDs": [1], "costs": ["cheap"]}]', "numbers"),
    (b'[{"ruleID": "R", "taskIDs": [99999999999999999999999]}]', "out of range"),
])
def test_bad_bids(client, body, words):
    rule_id = client.add_rule(5, ruleID="R")
    assert_refused(client.raw("/bid_on_tasks", body), 400, words)
    assert client.info(rule_id)["tasksRunning"] == 0


@pytest.mark.parametrize("body, words", [
    (b"nope", "not valid JSON"),
    (b'{"ruleID": "R"}', "JSON list"),
    (b'[{"ruleID": "R", "taskIDs": [0], "status": [5]}]', "status must be"),
    (b'[{"ruleID": "R", "taskIDs": [0, 1], "status": [3]}]', "one status per task ID"),
    (b'[{"ruleID": "R", "taskIDs": [0], "status": [3], "reasons": "x"}]', "reasons"),
    (b'[{"ruleID": "R", "taskIDs": [0], "status": [3]}, {"ruleID": "R", "taskIDs": [10], "status": [3]}]',
     "outside"),
    (b'[{"ruleID": "R", "taskIDs": [-1], "status": [3]}]', "outside"),
])
def test_bad_handins_change_nothing(client, body, words):
    rule_id = client.add_rule(10, ruleID="R")
    client.bid(rule_id, [0])
    assert_refused(client.raw("/handin", body), 400, words)
    info = client.info(rule_id)
    assert info["tasksCompleted"] == 0 and info["tasksRunning"] == 1


def test_bids_outside_the_released_range_win_nothing(client):
    rule_id = client.add_rule(10, release=False)
    client.call("/release_rule_tasks", ruleID=rule_id, release_start=0, release_end=2)
    assert client.bid(rule_id, [-3, 1, 5, 10, 10**9]) == [1]


def test_heartbeat_needs_a_node_id(client):
    assert_refused(client.raw("/node_heartbeat"), 400, "nodeID")


def test_bad_gzip_body(client):
    r = client.session.get(client.base + "/handin", data=b"not gzip", headers={"Content-Encoding": "gzip"}, timeout=5)
    assert_refused(r, 400, "gzip")
