"""``pyme-desk nodeserver`` as a user runs it."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from .conftest import NodeProcess, free_port, node_status, wait_for, wait_gone


def taskdist_names() -> list[str]:
    db = Path(tempfile.gettempdir()) / "_pyme-taskdist.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM dns")]


def test_serves_registers_and_stops_cleanly_on_sigterm(tmp_path, procs):
    node = NodeProcess(tmp_path, "--ruleserver", f"http://127.0.0.1:{free_port()}/", "--workers", "2",
                       "--advertise", "local", "--root", str(tmp_path / "root"))
    procs.append(node)
    doc = wait_for(lambda: (lambda d: d if [w["state"] for w in d["workers"]] == ["idle", "idle"] else None)(
        node_status(node.url)), 20, "two idle workers")
    workers = [w["pid"] for w in doc["workers"]]
    assert any(n.startswith("PYMENodeServer:") and n.endswith(f"PID:{node.proc.pid}") for n in taskdist_names())
    code, err = node.terminate()
    assert code == 0, err
    wait_gone(workers, 1)
    assert not any(n.endswith(f"PID:{node.proc.pid}") for n in taskdist_names())
    assert (tmp_path / "node-logs" / "nodeserver.log").exists()


def test_bad_options_are_one_line_errors(tmp_path):
    for args in (["--workers", "-1"], ["--port", "70000"], ["--chunk-size", "0"]):
        out = subprocess.run([sys.executable, "-m", "pyme_desk", "nodeserver", "--log-dir", str(tmp_path / "logs"),
                              "--root", str(tmp_path / "root"), *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "error:" in out.stderr and "Traceback" not in out.stderr
