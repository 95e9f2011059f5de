"""``pyme-desk cluster`` as a real process: URLs, Ctrl-C, kill -9 of the supervisor, errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from .conftest import alive, wait_for


def pyme_desk(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyme_desk", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    e["PYME_DESK_CONFIG"] = os.devnull
    return e


class Lines:
    """Collects a process's stdout lines on a thread; ``wait(text)`` for one to appear."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(ln.rstrip()) for ln in stream], daemon=True).start()

    def wait(self, text: str, timeout: float) -> str:
        return wait_for(lambda: next((ln for ln in self.lines if text in ln), None), timeout, repr(text), 0.05)


def test_cluster_command_prints_urls_and_stops_on_ctrl_c(tmp_path, env, data_root):
    proc = pyme_desk("cluster", "--root", str(data_root), "--workers", "1", "--no-gui", env=env)
    try:
        out = Lines(proc.stdout)
        out.wait("ready in", 30)
        urls = [ln.split()[-1] for ln in out.lines if ln.strip().startswith(("data server", "rule server", "node server"))
                and "http://127.0.0.1:" in ln]
        assert len(urls) == 3
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert alive(children) == []
        out.wait("stopped", 2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_children_exit_when_the_supervisor_is_killed(tmp_path, env, data_root):
    proc = pyme_desk("cluster", "--root", str(data_root), "--workers", "1", "--no-gui", env=env)
    tree: list[psutil.Process] = []
    try:
        Lines(proc.stdout).wait("ready in", 30)
        tree = psutil.Process(proc.pid).children(recursive=True)
        names = {"dataserver", "ruleserver", "nodeserver", "pyme_desk.node.worker"}
        assert {n for p in tree for n in names if n in p.cmdline()} == names, [p.cmdline() for p in tree]
        proc.kill()  # SIGKILL: no clean-up code of the supervisor runs
        proc.wait()
        # the lifeline (stdin closing) tells every server, and through the node its workers, to stop
        wait_for(lambda: not alive(tree), 15, "every child to exit after its supervisor died")
    finally:
        proc.kill()
        for p in tree:  # anything still alive here is a failure above; do not leave it running
            try:
                p.kill()
            except psutil.Error:
                pass
        proc.wait()


def test_second_cluster_on_the_same_root_is_refused_with_the_holder(tmp_path, env, data_root):
    first = pyme_desk("cluster", "--root", str(data_root), "--workers", "1", "--no-gui", env=env)
    try:
        Lines(first.stdout).wait("serving", 30)
        second = subprocess.run([sys.executable, "-m", "pyme_desk", "cluster", "--root", str(data_root), "--no-gui"],
                                env=env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 2
        assert f"already running (process {first.pid} holds" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(20)


def test_a_broken_config_is_one_clear_line(tmp_path, env):
    bad = tmp_path / "config.yaml"
    bad.write_text("dataserver-root: [unclosed\n")
    env["PYME_DESK_CONFIG"] = str(bad)
    done = subprocess.run([sys.executable, "-m", "pyme_desk", "cluster", "--no-gui"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "config.yaml, line" in done.stderr and "invalid YAML" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_service_ends_the_command_with_its_reason(tmp_path, env):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done = subprocess.run([sys.executable, "-m", "pyme_desk", "cluster", "--root", str(not_a_dir), "--no-gui"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the data server failed: refused its settings" in done.stderr
    assert "Traceback" not in done.stderr


FROZEN_ENTRY = """#!{python}
# Stands in for the PyInstaller build: sys.frozen is set and the program itself is
# sys.executable, so children can only be started through it (no "python" to run -m).
import sys
sys.frozen = True
sys.executable = {program!r}
from pyme_desk.cli import main
sys.exit(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in program is a #! script")
def test_a_frozen_build_starts_its_cluster_through_its_own_executable(tmp_path, env, data_root):
    program = tmp_path / "pyme-desk-frozen"
    program.write_text(FROZEN_ENTRY.format(python=sys.executable, program=str(program)))
    program.chmod(0o755)
    refused = subprocess.run([str(program), "-m", "json.tool"], env=env, capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode == 2 and "only pyme_desk's own modules" in refused.stderr
    proc = subprocess.Popen([str(program), "cluster", "--root", str(data_root), "--workers", "1", "--no-gui"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out = Lines(proc.stdout)
        out.wait("ready in", 60)
        tree = psutil.Process(proc.pid).children(recursive=True)
        worker = wait_for(lambda: next((p for p in psutil.Process(proc.pid).children(recursive=True)
                                        if "pyme_desk.node.worker" in p.cmdline()), None), 30, "a worker")
        for p in [*tree, worker]:  # every child, workers too, runs the frozen program itself
            assert str(program) in p.cmdline()[:2], p.cmdline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert alive([*tree, worker]) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
