"""Every endpoint of protocol.md §7.2, with PYME's shapes, over real HTTP."""
from __future__ import annotations

import gzip
import json
import re
import time

import requests

from pyme_desk.scheduler.rules import MAX_ADVERTISEMENTS

from .conftest import TEMPLATE


def test_add_rule_returns_a_pyme_style_id_and_stores_the_template_verbatim(client):
    template = '{"id": "{{ruleID}}~{{taskID}}", "inputs": {{taskInputs}}, "x": "é \\" {{ruleID}}"}'
    rule_id = client.add_rule(5, template=template)
    assert re.fullmatch(r"\d{6}-[0-9a-f]{32}", rule_id)
    advert = client.call("/task_advertisements")[0]
    assert advert == {"ruleID": rule_id, "taskTemplate": template, "availableTaskIDs": [0, 1, 2, 3, 4]}
    assert client.call("/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": [0], "costs": [0.1]}]) == [
        {"ruleID": rule_id, "taskIDs": [0], "template": template}]


def test_rule_ids_count_up_and_a_client_may_choose_one(client):
    first = client.add_rule(1)
    second = client.add_rule(1)
    assert int(second[:6]) == int(first[:6]) + 1
    assert client.add_rule(1, ruleID="my-rule") == "my-rule"
    assert client.raw("/add_integer_id_rule", {"template": "x"}, ruleID="my-rule").status_code == 409
    assert client.raw("/add_integer_id_rule", {"template": "x"}, ruleID="a~b").status_code == 400


def test_get_and_post_alike_bodies_on_get_and_gzip_both_ways(client):
    rule_id = client.add_rule(3000)
    r = client.raw("/task_advertisements", method="POST")
    assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
    assert r.json()[0]["availableTaskIDs"][-1] == 2999
    body = gzip.compress(json.dumps([{"ruleID": rule_id, "taskIDs": [7], "costs": [0.0]}]).encode())
    r = client.session.get(client.base + "/bid_on_tasks", data=body, headers={"Content-Encoding": "gzip"}, timeout=5)
    assert r.json()[0]["taskIDs"] == [7]


def test_release_in_ranges_and_adverts_list_ids_oldest_first(client):
    rule_id = client.add_rule(100, release=False)
    assert client.call("/task_advertisements") == []
    assert client.call("/release_rule_tasks", ruleID=rule_id, release_start=50, release_end=60) == {"ok": "True"}
    assert client.call("/release_rule_tasks", ruleID=rule_id, release_start=10, release_end=20) == {"ok": "True"}
    ids = client.call("/task_advertisements")[0]["availableTaskIDs"]
    assert ids == list(range(10, 20)) + list(range(50, 60))
    # bids are awarded in ID order too, whatever order the node lists them in
    assert client.bid(rule_id, [55, 12, 51, 11]) == [11, 12, 51, 55]
    assert client.info(rule_id)["tasksPosted"] == 20


def test_inputs_by_task_are_advertised_for_the_available_ids_only(client):
    inputs = {str(i): {"input": f"PYME-CLUSTER://c/f{i}.tif"} for i in range(4)}
    rule_id = client.call("/add_integer_id_rule", {"template": TEMPLATE, "inputsByTask": inputs},
                          max_tasks=4, release_start=0, release_end=4)["ruleID"]
    client.bid(rule_id, [0, 2])
    advert = client.call("/task_advertisements")[0]
    assert advert["availableTaskIDs"] == [1, 3]
    assert advert["inputsByTask"] == {"1": inputs["1"], "3": inputs["3"]}


def test_adverts_list_whole_rules_until_the_limit(client):
    a = client.add_rule(MAX_ADVERTISEMENTS - 10)
    b = client.add_rule(100)
    c = client.add_rule(100)
    adverts = client.call("/task_advertisements")
    assert [x["ruleID"] for x in adverts] == [a, b]
    assert len(adverts[1]["availableTaskIDs"]) == 100
    assert c not in {x["ruleID"] for x in adverts}


def test_queue_info_shape_and_finishing_with_mark_release_complete(client):
    rule_id = client.add_rule(1_000_000, release=False)
    client.call("/release_rule_tasks", ruleID=rule_id, release_start=5, release_end=8)
    client.handin(rule_id, client.bid(rule_id, range(5, 8)))
    queues = client.call("/distributor/queues")
    assert queues["ok"] is True
    info = queues["result"][rule_id]
    assert info == {"tasksPosted": 3, "tasksRunning": 0, "tasksCompleted": 3, "tasksFailed": 0,
                    "averageExecutionCost": 0.01, "active": True, "tasksTimedOut": 0,
                    "tasksCompleteAfterTimeout": 0, "finished": False, "expired": False}
    assert client.call("/mark_release_complete", ruleID=rule_id) == {"ok": "True"}
    assert client.info(rule_id)["finished"] is True


def test_mark_release_complete_with_n_tasks(client):
    rule_id = client.add_rule(10, release=False)
    client.call("/release_rule_tasks", ruleID=rule_id, release_start=0, release_end=2)
    client.call("/mark_release_complete", ruleID=rule_id, n_tasks=2)
    client.handin(rule_id, client.bid(rule_id, [0]))
    assert client.info(rule_id)["finished"] is False
    client.handin(rule_id, client.bid(rule_id, [1]), status=4)
    assert client.info(rule_id)["finished"] is True  # failures do not block completion
    assert client.raw("/release_rule_tasks", ruleID=rule_id, release_start=2, release_end=3).status_code == 409


def test_a_rule_finishes_by_max_tasks_and_chains_its_child(client):
    child_template = '{"id": "{{ruleID}}~{{taskID}}", "type": "recipe", "step": 2}'
    grandchild = {"template": '{"step": 3}', "max_tasks": 1}
    rule_id = client.call("/add_integer_id_rule", {"template": TEMPLATE, "on_completion": {
        "template": child_template, "max_tasks": 2, "rule_timeout": 50, "on_completion": grandchild}},
        max_tasks=3, release_start=0, release_end=3)["ruleID"]
    client.handin(rule_id, client.bid(rule_id, range(3)))
    queues = client.call("/distributor/queues")["result"]
    assert queues[rule_id]["finished"] is True
    children = [a for a in client.call("/task_advertisements") if a["ruleID"] != rule_id]
    assert len(children) == 1 and children[0]["taskTemplate"] == child_template
    assert children[0]["availableTaskIDs"] == [0, 1]
    child_id = children[0]["ruleID"]
    client.handin(child_id, client.bid(child_id, [0, 1]))
    adverts = client.call("/task_advertisements")
    assert [a["taskTemplate"] for a in adverts] == ['{"step": 3}']


def test_inactivated_rules_are_not_advertised_nor_awarded_but_count_handins(client):
    rule_id = client.add_rule(4)
    held = client.bid(rule_id, [0, 1])
    assert client.call("/inactivate_rule", ruleID=rule_id) == {"ok": "True"}
    assert client.call("/task_advertisements") == []
    reply = client.call("/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": [2, 3], "costs": [0.0, 0.0]}])
    assert reply == [{"ruleID": rule_id, "taskIDs": [], "template": ""}]
    client.handin(rule_id, held)
    info = client.info(rule_id)
    assert info["active"] is False and info["tasksCompleted"] == 2


def test_handin_for_an_unknown_rule_says_false_as_pyme_does(client):
    rule_id = client.add_rule(2)
    reply = client.call("/handin", [{"ruleID": "gone", "taskIDs": [0], "status": [3]},
                                    {"ruleID": rule_id, "taskIDs": client.bid(rule_id, [0]), "status": [3]}])
    assert reply["ok"] == "False" and "gone" in reply["error"]
    assert client.info(rule_id)["tasksCompleted"] == 1  # the known rule's entry still counts


def test_bid_on_a_vanished_rule_is_an_empty_award(client):
    assert client.call("/bid_on_tasks", [{"ruleID": "000099-gone", "taskIDs": [1], "costs": [0.0]}]) == [
        {"ruleID": "000099-gone", "taskIDs": [], "template": ""}]


def test_longpoll_answers_after_half_a_second(client):
    rule_id = client.add_rule(1)
    t = time.monotonic()
    reply = client.call("/queue_info_longpoll")
    assert 0.45 <= time.monotonic() - t < 3
    assert reply["ok"] is True and rule_id in reply["result"]


def test_index_is_html_for_browsers_and_json_otherwise(client):
    rule_id = client.add_rule(1)
    r = client.session.get(client.base + "/", headers={"Accept": "text/html"}, timeout=5)
    assert r.headers["Content-Type"].startswith("text/html") and rule_id in r.text
    assert client.call("/")["rules"][0]["ruleID"] == rule_id


def test_status_reports_rules_nodes_assignments_and_rates(client, node_client):
    rule_id = client.add_rule(10)
    a, b = node_client("node-a"), node_client("node-b")
    a.handin(rule_id, a.bid(rule_id, range(3)))
    b.bid(rule_id, range(3, 5))
    b.call("/node_heartbeat")
    status = client.call("/status")
    assert status["ok"] is True and status["server"]["taskTimeout"] == 600
    rule = status["rules"][0]
    assert rule["ruleID"] == rule_id and rule["nodes"] == {"node-b": 2}
    assert rule["tasksCompleted"] == 3 and rule["tasksRunning"] == 2 and rule["released"] == 10
    nodes = {n["nodeID"]: n for n in status["nodes"]}
    assert nodes["node-a"]["tasksCompleted"] == 3 and nodes["node-a"]["heartbeats"] is False
    assert nodes["node-b"]["tasksAssigned"] == 2 and nodes["node-b"]["heartbeats"] is True
    assert status["rates"]["completed"] > 0 and status["rates"]["assigned"] > 0


def test_heartbeat_reply(node_client):
    reply = node_client("n1").call("/node_heartbeat")
    assert reply == {"ok": True, "nodeID": "n1", "heartbeatInterval": 1.0, "leaseTimeout": 6.0, "tasksAssigned": 0}


def test_unknown_path_is_a_json_404(client):
    r = client.raw("/no_such_thing")
    assert r.status_code == 404 and "error" in r.json()


def test_requests_without_node_id_are_tracked_by_address(client):
    rule_id = client.add_rule(2)
    client.bid(rule_id, [0])
    nodes = client.call("/status")["nodes"]
    assert [n["nodeID"] for n in nodes] == ["127.0.0.1"] and nodes[0]["tasksAssigned"] == 1


def test_pyme_client_calls_work_with_plain_requests(server):
    """The calls as PYME's rule client and node server write them (plain requests, no session)."""
    base = f"http://127.0.0.1:{server.port}"
    r = requests.post(base + "/add_integer_id_rule?timeout=3600&max_tasks=1000000",
                      data=json.dumps({"template": TEMPLATE}), headers={"Content-Type": "application/json"}, timeout=5)
    rule_id = r.json()["ruleID"]
    requests.get(base + f"/release_rule_tasks?ruleID={rule_id}&release_start=0&release_end=20", timeout=5)
    adverts = requests.get(base + "/task_advertisements", timeout=5).json()
    bids = [{"ruleID": a["ruleID"], "taskIDs": a["availableTaskIDs"], "costs": [0.01] * len(a["availableTaskIDs"])}
            for a in adverts]
    awarded = requests.get(base + "/bid_on_tasks", data=json.dumps(bids), timeout=5).json()
    handins = [{"ruleID": a["ruleID"], "taskIDs": a["taskIDs"], "status": [3] * len(a["taskIDs"])} for a in awarded]
    assert requests.post(base + "/handin", data=json.dumps(handins), timeout=5).json()["ok"]
    requests.get(base + f"/mark_release_complete?ruleID={rule_id}", timeout=5)
    info = requests.get(base + "/distributor/queues", timeout=5).json()["result"][rule_id]
    assert info["finished"] and info["tasksCompleted"] == 20
