"""benchmarks/tasks.py runs end to end in raw mode (not a performance check)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tasks.py"


def test_raw_mode_prints_one_json_line_with_every_task_counted_once(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--tasks", "2000", "--tmp", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    raw = json.loads(lines[0])["raw"]
    for way in ("keepalive", "keepalive_requests", "fresh"):
        assert raw[way]["exactly_once"] is True and raw[way]["tasks_per_s"] > 0
    assert isinstance(raw["pass_keepalive"], bool)
    assert list(tmp_path.iterdir()) == []
