"""Task types (built-ins, plug-ins) and failure reports filed on a real data server."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from pyme_desk.node import tasks
from pyme_desk.node.tasks import (TaskContext, TaskFailed, failure_report, file_failure_report,
                                  load_task_types, register_task_type, run_task)
from pyme_desk.storage.server import DataServer


@pytest.fixture
def dataserver(tmp_path):
    server = DataServer(tmp_path / "root", server_filter="clu").start()
    yield server
    server.stop()


@pytest.fixture
def context(dataserver, tmp_path):
    ctx = TaskContext(node_name="node-a", worker_id="w_1", server_filter="clu", servers=[dataserver.url])
    yield ctx
    ctx.close()


def test_noop_runs_and_reports_which_node_ran_it(context, dataserver):
    types = load_task_types()
    target = dataserver.url + "__aggregate_txt/runs/log.txt"
    for i in range(3):
        run_task({"id": f"r~{i}", "type": "noop", "outputs": {"log": target}}, context, types)
    text = (dataserver.root.path / "runs" / "log.txt").read_text()
    assert text.splitlines() == ["r~0 node-a", "r~1 node-a", "r~2 node-a"]


def test_noop_refuses_a_silly_sleep(context):
    with pytest.raises(TaskFailed, match="taskdef.sleep"):
        run_task({"id": "r~0", "type": "noop", "taskdef": {"sleep": 1e6}}, context, load_task_types())


def test_unknown_unavailable_and_unsupported_types_fail_with_a_clear_reason(context):
    types = load_task_types()
    with pytest.raises(TaskFailed, match=r"unknown task type 'fancy'.*noop"):
        run_task({"id": "r~0", "type": "fancy"}, context, types)
    with pytest.raises(TaskFailed, match="localization analysis is not available"):
        run_task({"id": "r~0", "type": "localization"}, context, tasks.BUILTIN_TYPES)
    with pytest.raises(TaskFailed, match="recipe tasks are not supported"):
        run_task({"id": "r~0", "type": "recipe"}, context, types)


def record_run(task, context):
    """A task type for the entry-point test."""
    context.node_name = f"ran {task['id']}"


def test_entry_points_add_task_types_and_a_broken_one_fails_its_tasks_clearly(context, monkeypatch):
    plugins = [EntryPoint("sample", f"{__name__}:record_run", tasks.ENTRY_POINT_GROUP),
               EntryPoint("broken", "no_such_module_here:run", tasks.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(tasks, "entry_points", lambda group: [p for p in plugins if p.group == group])
    types = load_task_types()
    assert {"noop", "localization", "recipe", "sample", "broken"} <= set(types)
    run_task({"id": "r~3", "type": "sample"}, context, types)
    assert context.node_name == "ran r~3"
    with pytest.raises(TaskFailed, match="'broken' task type .* cannot be loaded: ModuleNotFoundError"):
        run_task({"id": "r~4", "type": "broken"}, context, types)


def test_a_registered_type_replaces_the_built_in(context, monkeypatch):
    monkeypatch.setattr(tasks, "_registered", {})
    seen = []
    register_task_type("localization", lambda task, ctx: seen.append((task["id"], ctx.node_name)))
    run_task({"id": "r~5", "type": "localization"}, context, load_task_types())
    assert seen == [("r~5", "node-a")]


def test_a_failure_report_lands_in_the_rules_log_on_the_tasks_cluster(context, dataserver):
    task = {"id": "000002-abc~7", "type": "recipe", "inputs": {"input": "pyme-cluster://clu/data/x.tif"}}
    try:
        run_task(task, context, load_task_types())
    except TaskFailed as e:
        report = failure_report(task, e, context.node_name)
    assert file_failure_report(task, report, context)
    logs = dataserver.root.path / "LOGS" / "rules"
    log_text = (logs / "000002-abc.log").read_text()
    assert "task 000002-abc~7 failed on node-a" in log_text and "recipe tasks are not supported" in log_text
    assert '"type": "recipe"' in log_text
    assert (logs / "000002-abc.html").read_text().startswith("<pre>")


def test_an_unexpected_error_reports_its_traceback(context):
    try:
        {}["missing"]
    except KeyError as e:
        report = failure_report({"id": "r~1"}, e, "node-a")
    assert "Traceback" in report and "KeyError" in report


def test_a_report_that_cannot_be_filed_is_logged_not_raised():
    ctx = TaskContext(node_name="n", worker_id="w", server_filter="clu", servers=["http://127.0.0.1:9/"])
    try:
        assert not file_failure_report({"id": "r~1"}, "report", ctx)
        assert not file_failure_report({"id": "no rule"}, "report", ctx)
    finally:
        ctx.close()
