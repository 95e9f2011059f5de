"""The supervisor on real data servers and scripted children: start, serve, crash, give up, stop."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import requests

from pyme_desk.errors import UsageError
from pyme_desk.supervisor import ServiceSpec, ServiceState, Supervisor, cluster_services

from .conftest import FAST, alive, process_tree, script_service, wait_for


def test_data_server_comes_up_and_serves_put_and_get(make_supervisor, data_root, data_only):
    sv = make_supervisor(data_root, data_only)
    assert sv.wait_ready(15), sv.snapshot()
    status = sv.snapshot().service("dataserver")
    assert status.state is ServiceState.READY and status.url.startswith("http://127.0.0.1:")
    r = requests.put(status.url + "hello/world.txt", data=b"supervised", timeout=5)
    assert r.status_code == 200, r.text
    assert requests.get(status.url + "hello/world.txt", timeout=5).content == b"supervised"
    assert (data_root / "hello" / "world.txt").read_bytes() == b"supervised"
    assert any("ready at" in line for line in sv.tail("dataserver", 50))
    assert (sv.log_dir / "dataserver.out.log").read_text().count("[supervisor]") >= 2


def test_kill_9_restarts_on_the_same_url_within_2_s(make_supervisor, data_root, data_only):
    sv = make_supervisor(data_root, data_only)
    assert sv.wait_ready(15)
    before = sv.snapshot().service("dataserver")
    os.kill(before.pid, signal.SIGKILL)
    t0 = time.monotonic()
    after = wait_for(lambda: (lambda s: s if s.state is ServiceState.READY and s.pid != before.pid else None)(
        sv.snapshot().service("dataserver")), 5, "the restarted data server")
    assert time.monotonic() - t0 < 2.0
    assert after.url == before.url and after.restarts == 1
    assert requests.get(after.url + "__status", timeout=5).status_code == 200
    assert any("killed by SIGKILL" in line for line in sv.tail("dataserver", 50))


def test_crash_loop_gives_up_with_its_reason(make_supervisor, data_root):
    crasher = script_service("crasher", "print('cannot go on: no licence'); raise SystemExit(3)")
    sv = make_supervisor(data_root, [crasher])
    status = sv.wait_for("crasher", [ServiceState.FAILED], 10)
    assert status.state is ServiceState.FAILED
    assert status.restarts == FAST.max_restarts
    assert "exited with code 3" in status.reason and "crashed 4 times" in status.reason
    assert "no licence" in status.reason
    assert not sv.wait_ready(0.1)


def test_unusable_root_fails_at_once_with_the_servers_message(make_supervisor, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    sv = make_supervisor(not_a_dir, cluster_services(not_a_dir)[:1])
    status = sv.wait_for("dataserver", [ServiceState.FAILED], 10)
    assert status.state is ServiceState.FAILED and status.restarts == 0
    assert "refused its settings" in status.reason and "data root" in status.reason


def test_not_ready_in_time_fails_and_leaves_no_process(make_supervisor, data_root):
    from dataclasses import replace

    hang = script_service("hang", "import time; print('thinking'); time.sleep(60)")
    sv = make_supervisor(data_root, [hang], policy=replace(FAST, startup_timeout=0.5))
    pid = wait_for(lambda: sv.snapshot().service("hang").pid, 5, "the child to start")
    status = sv.wait_for("hang", [ServiceState.FAILED], 10)
    assert "not ready within" in status.reason and "thinking" in status.reason
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             5, "the hung child to be gone")


def test_stop_start_restart_one_service(make_supervisor, data_root, data_only):
    sv = make_supervisor(data_root, data_only)
    assert sv.wait_ready(15)
    first = sv.snapshot().service("dataserver")
    stopped = sv.stop_service("dataserver")
    assert stopped.state is ServiceState.STOPPED and stopped.pid is None
    assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
    time.sleep(0.3)  # a stopped service is not "restarted after a crash"
    assert sv.snapshot().service("dataserver").state is ServiceState.STOPPED
    sv.start_service("dataserver")
    again = sv.wait_for("dataserver", [ServiceState.READY], 10)
    assert again.state is ServiceState.READY and again.pid != first.pid and again.restarts == 0
    sv.restart_service("dataserver")
    third = sv.wait_for("dataserver", [ServiceState.READY], 10)
    assert third.pid not in (first.pid, again.pid)
    with pytest.raises(UsageError, match="no service called 'nope'"):
        sv.stop_service("nope")


def test_one_cluster_per_root(make_supervisor, data_root, data_only, tmp_path):
    sv = make_supervisor(data_root, data_only)
    second = make_supervisor(data_root, data_only, start=False)
    with pytest.raises(UsageError, match=rf"already running \(process {os.getpid()} holds"):
        second.start()
    sv.stop()
    second.start()  # free again once the first stopped
    assert second.wait_ready(15)


def test_a_missing_module_is_unavailable_and_so_are_its_dependents(make_supervisor, data_root):
    base = cluster_services(data_root)[0]
    ghost = ServiceSpec(name="ghost", title="ghost server", args=("-m", "pyme_desk_ghost"), probe_path="/",
                        requires=("dataserver",), module="pyme_desk_ghost.command")
    after = ServiceSpec(name="after", title="after server", args=("-c", "pass"), probe_path="/",
                        requires=("ghost",))
    sv = make_supervisor(data_root, [base, ghost, after])
    assert sv.wait_ready(15)  # unavailable services do not hold the cluster back
    snap = sv.snapshot()
    assert snap.service("ghost").state is ServiceState.UNAVAILABLE
    assert "not available yet" in snap.service("ghost").reason
    assert snap.service("after").state is ServiceState.UNAVAILABLE
    with pytest.raises(UsageError, match="cannot be started"):
        sv.start_service("ghost")


def test_specs_must_list_dependencies_first(data_root):
    a = ServiceSpec(name="a", title="a", args=(), probe_path="/", requires=("b",))
    b = ServiceSpec(name="b", title="b", args=(), probe_path="/")
    with pytest.raises(ValueError, match="must come before"):
        Supervisor(data_root, [a, b])


def test_stop_leaves_no_process(make_supervisor, data_root):
    sv = make_supervisor(data_root, workers=1)
    assert sv.wait_ready(30), sv.snapshot()
    procs = process_tree(s.pid for s in sv.snapshot().services)
    assert len(procs) >= 4  # three servers and at least one worker
    sv.stop()
    assert alive(procs) == []
    assert all(s.state is ServiceState.STOPPED for s in sv.snapshot().services)
