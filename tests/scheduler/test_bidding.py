"""Buy-now and auctions, fair spreading of non-local tasks, oldest-first hand-out."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor


def test_cheap_bids_are_bought_at_once(client):
    rule_id = client.add_rule(100)
    t = time.monotonic()
    assert client.bid(rule_id, range(100), cost=0.19) == list(range(100))
    assert time.monotonic() - t < 0.15
    assert client.bid(rule_id, range(100), cost=0.01) == []  # already taken


def test_a_costly_bid_waits_for_the_auction_without_blocking_other_requests(client, node_client):
    rule_id = client.add_rule(10)
    bidder = node_client("remote")
    result = {}

    def bid():
        t = time.monotonic()
        result["ids"] = bidder.bid(rule_id, range(5), cost=1.0)
        result["s"] = time.monotonic() - t

    thread = threading.Thread(target=bid)
    thread.start()
    time.sleep(0.05)
    t = time.monotonic()
    assert client.bid(rule_id, [9], cost=0.01) == [9]  # buy-now while the auction is open
    client.call("/distributor/queues")
    assert time.monotonic() - t < 0.1
    thread.join(5)
    assert result["ids"] == [0, 1, 2, 3, 4]
    assert 0.19 <= result["s"] < 1.0


def test_a_bid_with_any_costly_task_goes_to_auction(client):
    rule_id = client.add_rule(3)
    t = time.monotonic()
    reply = client.call("/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": [0, 1], "costs": [0.01, 0.5]}])
    assert reply[0]["taskIDs"] == [0, 1] and time.monotonic() - t >= 0.19


def test_in_an_auction_the_lowest_cost_wins(client, node_client):
    rule_id = client.add_rule(4)
    near, far = node_client("near"), node_client("far")
    for c in (near, far):
        c.call("/task_advertisements")
    with ThreadPoolExecutor(2) as pool:
        far_ids = pool.submit(far.call, "/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": [0, 1, 2, 3], "costs": [1.0] * 4}])
        time.sleep(0.05)
        near_ids = pool.submit(near.call, "/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": [2, 3], "costs": [0.5, 0.5]}])
        far_won, near_won = far_ids.result(5)[0]["taskIDs"], near_ids.result(5)[0]["taskIDs"]
    assert near_won == [2, 3] and far_won == [0, 1]


def test_non_local_tasks_are_shared_between_idle_nodes_bidding_together(client, node_client):
    rule_id = client.add_rule(1000)
    a, b = node_client("a"), node_client("b")
    for c in (a, b):
        c.call("/task_advertisements")
    with ThreadPoolExecutor(2) as pool:
        won = list(pool.map(lambda c: c.bid(rule_id, range(1000), cost=1.0), (a, b)))
    assert len(won[0]) == 500 and len(won[1]) == 500
    assert set(won[0]).isdisjoint(won[1])
    assert list(range(500)) in won  # the earlier bidder gets the older half


def test_a_node_polling_alone_cannot_take_a_whole_rule_while_another_is_idle(client, node_client):
    rule_id = client.add_rule(1000)
    a, b = node_client("a"), node_client("b")
    b.call("/task_advertisements")  # b is alive and polling but bids later
    a.call("/task_advertisements")
    assert a.bid(rule_id, range(1000), cost=1.0) == list(range(500))
    assert a.bid(rule_id, range(1000), cost=1.0) == []  # a has its share already
    assert b.bid(rule_id, range(1000), cost=1.0) == list(range(500, 1000))


def test_local_tasks_are_not_capped(client, node_client):
    rule_id = client.add_rule(1000)
    a, b = node_client("a"), node_client("b")
    b.call("/task_advertisements")
    assert len(a.bid(rule_id, range(1000), cost=0.01)) == 1000


def test_a_single_node_gets_everything(client, node_client):
    rule_id = client.add_rule(1000)
    a = node_client("a")
    assert len(a.bid(rule_id, range(1000), cost=1.0)) == 1000


def test_tasks_are_handed_out_oldest_first_across_releases(client, node_client):
    rule_id = client.add_rule(1000, release=False)
    node = node_client("n")
    client.call("/release_rule_tasks", ruleID=rule_id, release_start=100, release_end=200)
    client.call("/release_rule_tasks", ruleID=rule_id, release_start=0, release_end=100)
    advertised = node.call("/task_advertisements")[0]["availableTaskIDs"]
    assert advertised == list(range(200))
    # a node bidding for a few of them as the advert lists them gets the oldest
    assert node.bid(rule_id, advertised[:50], cost=1.0) == list(range(50))


def test_in_a_mixed_request_the_cheap_bids_are_bought_before_the_auction(client, node_client):
    local_rule, remote_rule = client.add_rule(4), client.add_rule(4)
    mixed, other = node_client("mixed"), node_client("other")
    with ThreadPoolExecutor(1) as pool:
        t = time.monotonic()
        reply = pool.submit(mixed.call, "/bid_on_tasks", [
            {"ruleID": local_rule, "taskIDs": [0, 1], "costs": [0.01, 0.01]},
            {"ruleID": remote_rule, "taskIDs": [0, 1], "costs": [1.0, 1.0]}])
        time.sleep(0.1)
        assert other.bid(local_rule, [0, 1, 2]) == [2]  # 0 and 1 were already bought
        won = reply.result(5)
    assert time.monotonic() - t >= 0.19
    assert [w["taskIDs"] for w in won] == [[0, 1], [0, 1]]
    assert [w["ruleID"] for w in won] == [local_rule, remote_rule]
