"""Worker processes under a node server: running tasks, failing them visibly, crashing, stopping."""
from __future__ import annotations


import psutil
import pytest

from pyme_desk.node.server import NodeServer
from pyme_desk.storage.server import DataServer

from .conftest import free_port, node_status, wait_for


@pytest.fixture
def dataserver(tmp_path):
    server = DataServer(tmp_path / "root", server_filter="clu").start()
    yield server
    server.stop()


def start_node(dataserver, tmp_path, workers=2) -> NodeServer:
    return NodeServer(ruleserver=f"http://127.0.0.1:{free_port()}/", workers=workers, server_filter="clu",
                      servers=[dataserver.url], log_dir=tmp_path / "logs", drain_timeout=1.0).start()


def test_workers_run_tasks_and_failures_are_reported_in_the_rules_log(dataserver, tmp_path):
    node = start_node(dataserver, tmp_path)
    try:
        node.queue.put([{"id": f"000001-aa~{i}", "type": "noop"} for i in range(200)])
        node.queue.put([{"id": "000001-aa~200", "type": "recipe",
                         "inputs": {"input": "PYME-CLUSTER://clu/series/x.tif"}}])
        def all_done_and_idle():
            d = node_status(node.url)
            idle = len(d["workers"]) == 2 and all(w["state"] == "idle" for w in d["workers"])
            return d if idle and d["tasksCompleted"] + d["tasksFailed"] == 201 else None
        doc = wait_for(all_done_and_idle, 20, "the workers to run every task")
        assert (doc["tasksCompleted"], doc["tasksFailed"]) == (200, 1)
        workers = doc["workers"]
        assert len(workers) == 2 and {w["slot"] for w in workers} == {0, 1}
        assert sum(w["tasksDone"] for w in workers) == 200 and sum(w["errors"] for w in workers) == 1
        assert all(w["task"] is None and w["tasksHeld"] == 0 for w in workers)
        log = (dataserver.root.path / "LOGS" / "rules" / "000001-aa.log").read_text()
        assert "task 000001-aa~200 failed" in log and "recipe tasks are not supported" in log
        assert {1, 2} >= {len(list((tmp_path / "logs").glob("worker-*.log")))}
    finally:
        node.stop(grace=2.0, flush_timeout=0.2)
    pids = [w["pid"] for w in workers]
    assert not any(psutil.pid_exists(p) for p in pids)


def test_a_killed_worker_is_restarted_and_its_task_runs_again(dataserver, tmp_path):
    node = start_node(dataserver, tmp_path, workers=1)
    try:
        node.queue.put([{"id": f"r~{i}", "type": "noop", "taskdef": {"sleep": 0.2}} for i in range(6)])
        busy = wait_for(lambda: (lambda w: w if w["state"] == "busy" else None)(node_status(node.url)["workers"][0]),
                        20, "the worker to start a task")
        psutil.Process(busy["pid"]).kill()
        doc = wait_for(lambda: (lambda d: d if d["tasksCompleted"] == 6 else None)(node_status(node.url)),
                       30, "every task to complete")
        worker = doc["workers"][0]
        assert worker["restarts"] == 1 and worker["pid"] != busy["pid"]
        assert doc["tasksRequeued"] >= 1
    finally:
        node.stop(grace=2.0, flush_timeout=0.2)


def test_stop_lets_workers_finish_and_leaves_no_process(dataserver, tmp_path):
    node = start_node(dataserver, tmp_path)
    pids = wait_for(lambda: [w["pid"] for w in node_status(node.url)["workers"] if w["state"] == "idle"]
                    if len(node_status(node.url)["workers"]) == 2 else None, 20, "two idle workers")
    node.queue.put([{"id": f"r~{i}", "type": "noop", "taskdef": {"sleep": 0.05}} for i in range(4)])
    node.stop(grace=5.0, flush_timeout=0.2)
    assert all(slot.last_exit_code in (None, 0) for slot in node.pool.slots)
    assert all(slot.process is None or slot.process.returncode == 0 for slot in node.pool.slots)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert node.queue.completed == 4  # the queued tasks were drained before the workers stopped
