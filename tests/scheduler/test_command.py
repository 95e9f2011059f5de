"""``pyme-desk ruleserver`` as a real subprocess: registry, clean stop, kill -9 and resume."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.helpers import start_service

TEMPLATE = '{"id": "{{ruleID}}~{{taskID}}"}'


def start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    return start_service(tmp_path, "ruleserver", "--port", "0", *extra)


def stop(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGTERM)
    return proc.communicate(timeout=20)


def registry_names() -> list[str]:
    db = Path(tempfile.gettempdir()) / "_pyme-taskdist.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM dns")]


def test_cli_advertises_locally_serves_and_stops_cleanly(tmp_path):
    proc, info = start(tmp_path, "--advertise", "local", "--no-journal")
    try:
        assert info["url"] == f"http://127.0.0.1:{info['port']}/" and info["pid"] == proc.pid
        assert any(n.startswith("PYMERuleServer:") and n.endswith(f" - PID:{proc.pid}") for n in registry_names())
        rule = requests.post(info["url"] + "add_integer_id_rule?max_tasks=3", json={"template": TEMPLATE}, timeout=5)
        assert rule.json()["ok"] == "True"
    finally:
        out, err = stop(proc)
    assert proc.returncode == 0, err.decode()
    assert b"ready at" in out
    assert not any(n.endswith(f"PID:{proc.pid}") for n in registry_names())
    assert (tmp_path / "logs" / "ruleserver.log").exists()


def test_kill_9_then_restart_resumes_from_the_journal(tmp_path):
    journal = tmp_path / "rules.sqlite"
    proc, info = start(tmp_path, "--advertise", "none", "--journal", str(journal))
    try:
        base = info["url"]
        rule_id = requests.post(base + "add_integer_id_rule?max_tasks=10&release_start=0&release_end=10",
                                json={"template": TEMPLATE}, timeout=5).json()["ruleID"]
        won = requests.get(base + "bid_on_tasks?nodeID=n", timeout=5, data=json.dumps(
            [{"ruleID": rule_id, "taskIDs": list(range(6)), "costs": [0.01] * 6}])).json()[0]["taskIDs"]
        requests.get(base + "handin?nodeID=n", timeout=5,
                     data=json.dumps([{"ruleID": rule_id, "taskIDs": won[:4], "status": [3] * 4}]))
        time.sleep(0.6)  # a few journal intervals
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    proc, info = start(tmp_path, "--advertise", "none", "--journal", str(journal))
    try:
        result = requests.get(info["url"] + "distributor/queues", timeout=5).json()["result"]
        assert result[rule_id]["tasksCompleted"] == 4 and result[rule_id]["tasksRunning"] == 2
        assert result[rule_id]["tasksPosted"] == 10
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_bad_options_are_one_line_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyme_desk", "ruleserver", "--port", "70000", "--no-journal",
                          "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--port must be between" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "pyme_desk", "ruleserver", "--port", "0", "--task-timeout", "0",
                          "--no-journal", "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "time-outs must be positive" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "pyme_desk", "ruleserver", "--port", "0", "--advert-interval", "-1",
                          "--no-journal", "--log-dir", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--advert-interval must be" in out.stderr and "Traceback" not in out.stderr
