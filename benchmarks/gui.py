"""GUI benchmark: launch time, event-loop latency during a simulated acquisition, GUI memory.

    python benchmarks/gui.py [--seconds 30] [--memory-seconds 0]

Starts the embedded cluster of one on a temporary data root (offscreen when there is no
display), measures the time from start to a shown window whose cluster is ready, then runs a
simulated acquisition (plus its analysis, when the node can fit) while a 5 ms QTimer measures
how late the event loop serves it (latency = actual - expected interval).  With
``--memory-seconds`` the window keeps updating that long and the RSS growth is reported, with
its slope after the first two minutes (caches filling up) in MB per minute; ``--trace-memory``
also prints the ten source lines whose live Python allocations grew most (tracemalloc; slower)
to stderr.  Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TICK_MS = 5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="latency measurement time")
    parser.add_argument("--memory-seconds", type=float, default=0.0, help="then run this long, measure RSS")
    parser.add_argument("--frames", type=int, default=100000,
                        help="frames the simulated acquisition spools at 100 frames/s (default 100,000)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="report the source lines whose allocations grew most during the memory run")
    args = parser.parse_args(argv)

    import numpy as np
    import psutil
    from PyQt5.QtCore import QElapsedTimer, QTimer
    from PyQt5.QtWidgets import QApplication

    from pyme_desk.config import Config
    from pyme_desk.gui.app import QtMainWindow
    from pyme_desk.model.desk import Desk, default_services

    app = QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="pyme-desk-bench-"))
    config = Config(values={"dataserver-root": str(tmp / "data")})
    t0 = time.perf_counter()
    desk = Desk(config, services=default_services(config, False, log_dir=tmp / "logs", state_dir=tmp / "state"),
                discover=False)
    desk.start()
    window = QtMainWindow(desk)
    window.show()
    app.processEvents()
    launch_s = time.perf_counter() - t0

    late: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def tick() -> None:
        now = clock.nsecsElapsed()
        late.append(max((now - last[0]) / 1e6 - TICK_MS, 0.0))
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(TICK_MS)
    acquisition = desk.simulate("bench/acq", n_frames=args.frames, frame_rate=100, width=256, height=256)
    analysed = False
    if not desk.analysis_unavailable():
        time.sleep(1.0)
        desk.launch_analysis("bench/acq", {"threshold": 3.0, "fit": "cpu"})
        analysed = True
    window.tabs.setCurrentWidget(window.panels["acquisition"])

    def run_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.001)

    run_for(2.0)  # warm-up: first frames, numba compilation, first listings
    late.clear()
    last[0] = clock.nsecsElapsed()
    run_for(args.seconds)
    latency = np.array(late)
    process = psutil.Process()
    rss_start = process.memory_info().rss
    rss_samples_mb = [round(rss_start / 2**20, 1)]
    if args.trace_memory:
        import tracemalloc

        tracemalloc.start(5)
        traced_start = tracemalloc.take_snapshot()
    remaining = args.memory_seconds
    p99_per_minute = []
    while remaining > 0:  # one RSS sample a minute shows a trend, not just two points
        step = min(60.0, remaining)
        late.clear()  # the latency samples themselves must not grow the process
        run_for(step)
        remaining -= step
        rss_samples_mb.append(round(process.memory_info().rss / 2**20, 1))
        p99_per_minute.append(round(float(np.percentile(late, 99)), 1) if late else None)
    rss_end = process.memory_info().rss
    if args.trace_memory:
        growth = tracemalloc.take_snapshot().compare_to(traced_start, "lineno")
        print("largest growth of live Python allocations during the memory run:", file=sys.stderr)
        for stat in growth[:10]:
            print(f"  {stat}", file=sys.stderr)
    settled = rss_samples_mb[2:]  # from minute 2 on: caches and histories have filled
    slope = (float(np.polyfit(np.arange(len(settled)), settled, 1)[0]) if len(settled) >= 3 else None)
    snap = acquisition.snapshot()
    analyses = desk.analysis_snapshots()
    result = {
        "benchmark": "gui",
        "launch_to_ready_window_s": round(launch_s, 3),
        "services": {s.name: s.state for s in desk.services.snapshot()},
        "event_loop_latency_ms": {"p50": round(float(np.percentile(latency, 50)), 2),
                                  "p99": round(float(np.percentile(latency, 99)), 2),
                                  "max": round(float(latency.max()), 2), "samples": int(latency.size)},
        "acquisition": {"frames_stored": snap.frames_stored, "frames_per_s": round(snap.frames_per_s, 1),
                        "mb_per_s": round(snap.mb_per_s, 2), "frame": "256x256"},
        "analysis": ({"state": analyses[-1].state, "tasks_completed": analyses[-1].tasks_completed,
                      "tasks_failed": analyses[-1].tasks_failed} if analysed and analyses else None),
        "rss_mb": {"after_latency_run": round(rss_start / 2**20, 1), "after_memory_run": round(rss_end / 2**20, 1),
                   "memory_seconds": args.memory_seconds, "samples_per_minute": rss_samples_mb,
                   "growth_mb_per_min_after_2_min": None if slope is None else round(slope, 2),
                   "latency_p99_ms_per_minute": p99_per_minute},
    }
    for log_file in sorted((tmp / "data" / "LOGS" / "rules").glob("*.log")):  # why tasks failed
        print(f"{log_file.name}:\n{log_file.read_text(errors='replace')[-4000:]}", file=sys.stderr)
    timer.stop()
    window.shutdown()
    window.deleteLater()
    app.processEvents()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
