"""Time from ``pyme-desk cluster --no-gui`` start to every service ready; prints one JSON line.

Each run starts the cluster of one (data, rule and node server, ``--workers`` workers) on a
fresh data root and per-user state directory, reads its stdout until it reports that all
services answer their readiness probes, then stops it with Ctrl-C.  The reference is PYME's
cluster of one, which sleeps a fixed 5 s between the rule and the node server alone (and never
checks that anything came up), so it needs at least 5 s.

    .venv/bin/python benchmarks/startup.py --runs 5
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYME_FIXED_SLEEP_S = 5.0
TARGET_S = 2.0


def one_run(workers: int, tmp: Path) -> dict:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"), PYME_DESK_CONFIG=os.devnull)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pyme_desk", "cluster", "--root", str(tmp / "data"),
                             "--workers", str(workers), "--no-gui", "--log-dir", str(tmp / "logs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if "ready in" in line:
                wall = time.perf_counter() - t0
                reported = float(line.split("ready in")[1].split()[0])
                return {"wall_s": round(wall, 3), "supervisor_s": round(reported, 3)}
        raise RuntimeError(f"the cluster did not come up: {proc.stderr.read()}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="pyme-desk-startup-") as tmp:
            runs.append(one_run(args.workers, Path(tmp)))
    median = statistics.median(r["wall_s"] for r in runs)
    print(json.dumps({"benchmark": "cluster-startup", "workers": args.workers, "cpus": os.cpu_count(),
                      "startup_median_s": median, "runs": runs,
                      "pyme_reference_min_s": PYME_FIXED_SLEEP_S, "target_s": TARGET_S,
                      "pass": median < TARGET_S}))


if __name__ == "__main__":
    main()
