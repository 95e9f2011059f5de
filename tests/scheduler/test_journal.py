"""Rules and task states survive a restart through the sqlite journal."""
from __future__ import annotations

import time

import pytest

from pyme_desk.errors import UsageError

from .conftest import Client, make_server


def test_a_restarted_server_resumes_rules_with_the_same_counts(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with make_server(journal=journal) as srv:
        c, node = Client(f"http://127.0.0.1:{srv.port}"), Client(f"http://127.0.0.1:{srv.port}", "node-1")
        done_rule = c.add_rule(4)
        node.handin(done_rule, node.bid(done_rule, range(4)))
        rule_id = c.call("/add_integer_id_rule", {"template": "T {{taskID}}", "inputsByTask": {"7": {"a": 1}},
                                                  "on_completion": {"template": "child"}},
                         max_tasks=100, release_start=0, release_end=10, timeout=123)["ruleID"]
        node.handin(rule_id, node.bid(rule_id, range(5)))
        node.call("/handin", [{"ruleID": rule_id, "taskIDs": [3], "status": [3]}])  # a duplicate
        assert node.bid(rule_id, [5, 6]) == [5, 6]
        node.call("/handin", [{"ruleID": rule_id, "taskIDs": [5], "status": [4], "reasons": ["bad frame"]}])
        c.call("/release_rule_tasks", ruleID=rule_id, release_start=50, release_end=52)
        before = c.call("/distributor/queues")["result"]
        before_status = c.call("/status")
        c.close()
        node.close()
    with make_server(journal=journal) as srv:
        c, node = Client(f"http://127.0.0.1:{srv.port}"), Client(f"http://127.0.0.1:{srv.port}", "node-1")
        assert c.call("/distributor/queues")["result"] == before
        rule = c.call("/status")["rules"][1]
        old = before_status["rules"][1]
        for key in ("ruleID", "created", "maxTasks", "released", "nodes", "failureReasons", "failureNotes",
                    "duplicateHandins"):
            assert rule[key] == old[key], key
        assert rule["nodes"] == {"node-1": 1}  # task 6 still held by node-1
        advert = [a for a in c.call("/task_advertisements") if a["ruleID"] == rule_id][0]
        assert advert["availableTaskIDs"] == [7, 8, 9, 50, 51] and advert["inputsByTask"] == {"7": {"a": 1}}
        assert advert["taskTemplate"] == "T {{taskID}}"
        # the rule goes on: node-1 finishes its task and the rest; the child rule appears
        node.handin(rule_id, [6])
        node.handin(rule_id, node.bid(rule_id, [7, 8, 9, 50, 51]))
        c.call("/mark_release_complete", ruleID=rule_id)
        info = c.info(rule_id)
        assert info["finished"] and info["tasksCompleted"] == 11 and info["tasksFailed"] == 1
        new_id = c.add_rule(1)
        assert int(new_id[:6]) > int(rule_id[:6]) + 1  # numbering continues past the child
        assert any(a["taskTemplate"] == "child" for a in c.call("/task_advertisements"))
        c.close()
        node.close()


def test_leases_restart_with_the_server(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with make_server(journal=journal, node_timeout=0.3) as srv:
        node = Client(f"http://127.0.0.1:{srv.port}", "gone")
        rule_id = node.add_rule(3)
        node.call("/node_heartbeat")
        node.bid(rule_id, range(3))
        node.close()
    with make_server(journal=journal, node_timeout=0.3) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        assert c.info(rule_id)["tasksRunning"] == 3
        deadline = time.monotonic() + 5
        while c.info(rule_id)["tasksTimedOut"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.info(rule_id)["tasksTimedOut"] == 3  # the node never came back
        c.close()


def test_expired_rules_leave_the_journal(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with make_server(journal=journal) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        rule_id = c.add_rule(2, release=False, timeout=0.1)
        deadline = time.monotonic() + 5
        while rule_id in c.call("/distributor/queues")["result"] and time.monotonic() < deadline:
            time.sleep(0.05)
        c.close()
    with make_server(journal=journal) as srv:
        c = Client(f"http://127.0.0.1:{srv.port}")
        assert c.call("/distributor/queues")["result"] == {}
        c.close()


def test_two_servers_cannot_share_a_journal(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with make_server(journal=journal):
        with pytest.raises(UsageError, match="in use by another rule server"):
            make_server(journal=journal).start()


def test_a_file_that_is_not_a_journal_is_refused_clearly(tmp_path):
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a usable sqlite file"):
        make_server(journal=journal).start()
    assert journal.read_bytes() == b"this is not sqlite" * 100
