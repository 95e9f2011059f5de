"""Adverts are rebuilt after a change at most every ``advert_interval``, and less often when a
rebuild is slow, so a huge rule cannot keep the rule server busy rebuilding them."""
from __future__ import annotations

import time

from .conftest import Client, make_server


def first_ids(client: Client, n: int = 3) -> list[int]:
    return client.call("/task_advertisements")[0]["availableTaskIDs"][:n]


def test_adverts_are_rebuilt_once_the_interval_has_passed():
    with make_server(advert_interval=0.4) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        rule_id = c.add_rule(10)
        assert first_ids(c) == [0, 1, 2]
        assert c.bid(rule_id, [0]) == [0]
        assert first_ids(c) == [0, 1, 2]  # within the interval: as built before
        time.sleep(0.45)
        assert first_ids(c) == [1, 2, 3]
        c.close()


def test_a_slow_rebuild_widens_the_gap_to_ten_times_its_duration():
    with make_server(advert_interval=0.01) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        rule_id = c.add_rule(10)
        c.call("/task_advertisements")
        c.bid(rule_id, [0])
        time.sleep(0.02)
        assert first_ids(c) == [1, 2, 3]  # a quick rebuild: the interval alone counts
        big = c.add_rule(250_000)  # listing 250,000 IDs takes tens of milliseconds
        time.sleep(0.02)
        t = time.monotonic()
        c.raw("/task_advertisements")
        gap = 10 * (time.monotonic() - t)
        c.bid(rule_id, [1])
        time.sleep(0.05)  # five intervals, but well under ten rebuild times
        assert first_ids(c) == [1, 2, 3]  # stale: the last rebuild was slow
        time.sleep(gap)
        assert first_ids(c) == [2, 3, 4]
        c.call("/inactivate_rule", ruleID=big)
        c.close()
