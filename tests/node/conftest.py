"""Real rule servers, node servers and workers on 127.0.0.1, and a guard that no process outlives a test."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from pyme_desk.scheduler.server import RuleServer
from tests.helpers import wait_for  # noqa: F401 - re-exported to the tests of this folder

NOOP = json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop"})


def noop_template(**fields) -> str:
    task = {"id": "{{ruleID}}~{{taskID}}", "type": "noop"}
    task.update(fields)
    return json.dumps(task)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rule_server(**kwargs) -> RuleServer:
    """A rule server with intervals short enough for tests."""
    settings = dict(advert_interval=0.05, sweep_interval=0.1, journal_interval=0.05, node_timeout=2.0,
                    heartbeat_interval=0.3)
    settings.update(kwargs)
    return RuleServer(**settings)


def call(url: str, endpoint: str, body=None, **params):
    r = requests.post(url + endpoint, params=params, data=None if body is None else json.dumps(body), timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def add_rule(url: str, n: int, template: str = NOOP) -> str:
    reply = call(url, "add_integer_id_rule", {"template": template}, max_tasks=n, release_start=0, release_end=n)
    return reply["ruleID"]


def rule_info(url: str, rule_id: str) -> dict:
    return call(url, "distributor/queues")["result"][rule_id]


def rule_status(url: str, rule_id: str) -> dict:
    return next(r for r in call(url, "status")["rules"] if r["ruleID"] == rule_id)




def wait_finished(url: str, rule_id: str, timeout: float) -> dict:
    return wait_for(lambda: (lambda i: i if i["finished"] else None)(rule_info(url, rule_id)), timeout,
                    f"rule {rule_id} to finish")


def node_status(node_url: str) -> dict:
    return requests.get(node_url + "node/status", timeout=10).json()


class NodeProcess:
    """``pyme-desk nodeserver`` as a subprocess."""

    def __init__(self, tmp_path: Path, *args: str, name: str = "node") -> None:
        self.port_file = tmp_path / f"{name}.port.json"
        self.port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pyme_desk", "nodeserver", "--port", "0", "--port-file", str(self.port_file),
               "--log-dir", str(tmp_path / f"{name}-logs"), *args]
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, creationflags=flags)
        info = wait_for(self._read_port_file, 30, "the node server's port file")
        self.url = info["url"]

    def _read_port_file(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node server exited: {self.proc.stderr.read().decode()}")
        if self.port_file.exists():
            return json.loads(self.port_file.read_text())
        return None

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    def terminate(self, timeout: float = 30) -> tuple[int, str]:
        if os.name == "nt":
            self.proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def wait_gone(pids, timeout: float = 10.0) -> None:
    """Fail unless every process in ``pids`` has exited within ``timeout`` s (killing stragglers)."""
    def all_gone():
        return not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    try:
        wait_for(all_gone, timeout, f"processes {list(pids)} to exit", 0.1)
    finally:
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Every process a test starts (and their children) must be gone when it ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    def leftovers():
        alive = []
        for p in me.children(recursive=True):
            try:
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive
    deadline = time.monotonic() + 10
    left = leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers()
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


@pytest.fixture
def procs():
    """Node-server subprocesses, killed (with their workers) at the end whatever happens."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        workers = []
        try:
            workers = node.worker_pids()
        except psutil.Error:
            pass
        node.kill()
        wait_gone(workers)
