"""benchmarks/webdav.py runs end to end on a small size (not a performance check)."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "webdav.py"


def test_small_run_prints_one_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--size", str(4 * 2**20), "--rounds", "1", "--tmp", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    [line] = out.stdout.splitlines()
    report = json.loads(line)
    assert report["webdav_put_MBps"] > 0 and report["direct_get_MBps"] > 0
    assert set(report["pass"]) == {"upload", "download"}
    assert list(tmp_path.iterdir()) == []
