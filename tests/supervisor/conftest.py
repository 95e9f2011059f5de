"""Supervisors on real subprocesses (127.0.0.1 only), torn down even when a test fails."""
from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from pyme_desk.supervisor import Policy, ServiceSpec, Supervisor, cluster_services
from tests.helpers import wait_for  # noqa: F401 - re-exported to the tests of this folder

#: quick restarts and short waits, so crash tests take a fraction of a second
FAST = Policy(startup_timeout=20.0, health_interval=0.2, probe_timeout=1.0, restart_backoff=0.05,
              max_backoff=0.5, max_restarts=3, restart_window=30.0, stop_grace=5.0)




def script_service(name: str, code: str, probe: str = "/") -> ServiceSpec:
    """A service that is a Python snippet (for crash loops and hangs)."""
    return ServiceSpec(name=name, title=f"{name} service", args=("-c", code), probe_path=probe)


def process_tree(pids) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants that exist now."""
    found = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            found += [p, *p.children(recursive=True)]
        except psutil.Error:
            pass
    return found


def alive(procs) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def make_supervisor(tmp_path):
    """``make_supervisor(root, services=None, **kw)``: a started Supervisor, stopped at teardown."""
    made: list[Supervisor] = []

    def make(root: Path, services=None, *, start: bool = True, **kwargs) -> Supervisor:
        kwargs.setdefault("policy", FAST)
        kwargs.setdefault("state_dir", tmp_path / "state")
        kwargs.setdefault("log_dir", tmp_path / "logs")
        sv = Supervisor(root, services, **kwargs)
        made.append(sv)
        if start:
            sv.start()
        return sv

    yield make
    for sv in made:
        sv.stop()


@pytest.fixture
def data_only(data_root):
    """Just the data server of the cluster of one."""
    return cluster_services(data_root)[:1]


PY = sys.executable
