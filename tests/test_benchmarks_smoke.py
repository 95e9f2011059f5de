"""The data-server benchmark script runs end to end (not a performance check)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "dataserver.py"


def test_help_describes_the_options():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    for option in ("--quick", "--rounds", "--no-nginx"):
        assert option in out.stdout


def test_quick_run_against_our_server_prints_one_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-nginx", "--tmp", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    report = json.loads(lines[0])
    assert report["nginx"] is None and report["nginx_skipped"]
    assert report["ours"]["put_big_MBps"] > 0 and report["ours"]["get_small_fresh_fps"] > 0
    assert report["ours"]["list_warm_ms"] > 0
    assert report["pass"]["put_big_MBps"] is None  # no nginx, no ratio verdict
    assert isinstance(report["pass"]["list_warm_ms"], bool)
    assert list(tmp_path.iterdir()) == []  # data roots removed
