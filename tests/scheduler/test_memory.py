"""1,000 rules x 20,000 tasks fit in well under 1 GB and the server stays responsive."""
from __future__ import annotations

import gc
import time

import numpy as np
import psutil
import pytest

from pyme_desk.scheduler.rules import Bid, HandIn

from .conftest import TEMPLATE, make_server


@pytest.fixture
def server(tmp_path):
    """With the journal on, as in use: its snapshots count too."""
    with make_server(journal=tmp_path / "journal.sqlite") as srv:
        yield srv


def test_a_thousand_rules_of_twenty_thousand_tasks(server, client, node_client):
    gc.collect()
    process = psutil.Process()
    rss0 = process.memory_info().rss
    t = time.monotonic()
    rule_ids = [client.add_rule(20_000, max_tasks=1_000_000, template=TEMPLATE) for _ in range(1000)]
    created_s = time.monotonic() - t
    # every task assigned once and half of them failed, straight through the rule book (20 M
    # tasks over HTTP would take minutes): every per-task array has been written
    book = server.book
    worker = book.node("bulk", "127.0.0.1")
    ids = np.arange(20_000)
    for rule_id in rule_ids[:-1]:
        book.award(worker, [Bid(rule_id, ids, np.full(20_000, 0.01))])
        book.handin(worker, [HandIn(rule_id, ids[::2], np.full(10_000, 4))])
    server.sync_journal()
    rss = process.memory_info().rss - rss0
    print(f"1000 x 20000 tasks: {rss / 2**20:.0f} MiB more RSS, created in {created_s:.1f} s")
    assert rss < 500 * 2**20  # ~11 bytes per task: 220 MB; 1 GB is the requirement

    node = node_client("n")
    timings = {}
    for name, call in (("adverts", lambda: node.call("/task_advertisements")),
                       ("bid", lambda: node.bid(rule_ids[-1], range(100))),
                       ("handin", lambda: node.handin(rule_ids[-1], range(100))),
                       ("queues", lambda: client.call("/distributor/queues")),
                       ("status", lambda: client.call("/status"))):
        t = time.monotonic()
        reply = call()
        timings[name] = time.monotonic() - t
        assert reply
    print({k: round(v * 1e3, 1) for k, v in timings.items()}, "ms")
    assert max(timings.values()) < 2.0
    assert client.info(rule_ids[-1])["tasksCompleted"] == 100
