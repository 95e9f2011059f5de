"""The end-to-end task benchmark runs (not a performance check)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tasks_e2e.py"


def test_a_small_run_prints_one_json_line_with_the_figures(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--tasks", "400", "--rate", "800", "--tmp", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    report = json.loads(lines[0])
    for phase in ("burst", "paced"):
        assert report[phase]["exactly_once"] and report[phase]["tasks_per_s"] > 0
        assert 0 < report[phase]["p50_ms"] <= report[phase]["p99_ms"]
    assert list(tmp_path.iterdir()) == []  # journals and logs removed
