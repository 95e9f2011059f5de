"""Benchmark task distribution end to end: post → bid → run → hand in, with real processes.

A rule server (``pyme-desk ruleserver``, journal on) and one node server (``pyme-desk
nodeserver --workers 2``) run as their own processes on loopback; the node's worker processes
run ``noop`` tasks.  Two phases, each on a fresh rule of ``--tasks`` tasks:

* ``burst``: every task is released at once; ``tasks_per_s`` = tasks / (time from the release
  to the rule server reporting the rule finished).  Target: >= 1,000 tasks/s on 2 cores.
* ``paced``: tasks are released in chunks of 50 at ``--rate`` tasks/s (as a spooling series
  releases frames), and the release → completion latency of each task is measured: p50 and
  p99 (ms).  Completion times come from polling ``/distributor/queues`` every few ms (it is
  rebuilt on every change); the i-th task to complete is taken to be task i, since tasks are
  handed out oldest first (the error is at most the time between two chunks).

Afterwards the rule must report every task completed exactly once (no failures, no
duplicates).  The CPU seconds of the rule server and of the node server with its workers are
reported per phase.  Progress goes to stderr; stdout receives exactly one JSON line.

    .venv/bin/python benchmarks/tasks_e2e.py              # 20,000 tasks per phase
    .venv/bin/python benchmarks/tasks_e2e.py --quick      # 2,000 tasks per phase, a few seconds
    .venv/bin/python benchmarks/tasks_e2e.py --advert-interval 0.05   # another advert rebuild interval
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._service import Service, log  # noqa: E402
TARGET_TASKS_PER_S = 1000
CHUNK = 50
TEMPLATE = json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop"})


class RuleClient:
    """One keep-alive connection to the rule server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, path: str, body: object = None) -> object:
        data = b"" if body is None else json.dumps(body).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        payload = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {payload[:200]!r}")
        return json.loads(payload)

    def info(self, rule_id: str) -> dict:
        return self.call("/distributor/queues")["result"][rule_id]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def wait_node_ready(node: Service, timeout: float = 30) -> None:
    """Until both workers have asked the node for work and the node reaches the rule server."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn.request("GET", "/node/status")
        doc = json.loads(conn.getresponse().read())
        if doc["Polling"] and len(doc["workers"]) >= 2 and all(w["state"] == "idle" for w in doc["workers"]):
            conn.close()
            return
        time.sleep(0.05)
    raise RuntimeError("the node server did not get ready")


def run_phase(rule: RuleClient, services: list[Service], n: int, rate: float | None) -> dict:
    """One rule of ``n`` tasks: all released at once (rate None) or paced; returns the figures."""
    rule_id = rule.call(f"/add_integer_id_rule?max_tasks={n}", {"template": TEMPLATE})["ruleID"]
    cpu0 = [s.cpu_seconds() for s in services]
    released: list[float] = []  # release time of task i
    completed_at: list[float] = []  # time the completed count first reached i + 1
    start = time.perf_counter()
    next_release = 0
    while True:
        now = time.perf_counter()
        if next_release < n and (rate is None or now >= start + next_release / rate):
            end = n if rate is None else min(n, next_release + CHUNK)
            rule.call(f"/release_rule_tasks?ruleID={rule_id}&release_start={next_release}&release_end={end}")
            stamp = time.perf_counter()
            released.extend([stamp] * (end - next_release))
            next_release = end
            if next_release == n:
                rule.call(f"/mark_release_complete?ruleID={rule_id}")
        info = rule.info(rule_id)
        stamp = time.perf_counter()
        done = info["tasksCompleted"] + info["tasksFailed"]
        completed_at.extend([stamp] * (done - len(completed_at)))
        if info["finished"]:
            break
        if stamp - start > max(120.0, 5 * n / (rate or TARGET_TASKS_PER_S)):
            raise RuntimeError(f"the rule did not finish: {info}")
        time.sleep(0.003)
    elapsed = completed_at[-1] - released[0]
    latencies = [1e3 * (c - r) for r, c in zip(released, completed_at)]
    figures = {"tasks": n, "seconds": round(elapsed, 3), "tasks_per_s": round(n / elapsed),
               "p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
               "completed": info["tasksCompleted"], "failed": info["tasksFailed"],
               "timed_out": info["tasksTimedOut"],
               "cpu_s": {"ruleserver": round(services[0].cpu_seconds() - cpu0[0], 2),
                         "nodeserver_and_workers": round(services[1].cpu_seconds() - cpu0[1], 2)}}
    duplicates = next(r for r in rule.call("/status")["rules"] if r["ruleID"] == rule_id)["duplicateHandins"]
    figures["duplicate_handins"] = duplicates
    figures["exactly_once"] = info["tasksCompleted"] == n and info["tasksFailed"] == 0 and duplicates == 0
    return figures


def run_benchmark(n_tasks: int, rate: float, workers: int = 2, tmp: Path | None = None,
                  advert_interval: float | None = None) -> dict:
    """Both phases with a fresh rule server and node server; the report as a dict.
    ``advert_interval``: the rule server's ``--advert-interval`` (None: its default)."""
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        d = Path(d)
        tuning = [] if advert_interval is None else ["--advert-interval", str(advert_interval)]
        ruleserver = Service(d, "ruleserver", "--advertise", "none", "--log-dir", str(d / "ruleserver-logs"),
                             "--journal", str(d / "journal.sqlite"), *tuning)
        node = None
        try:
            node = Service(d, "nodeserver", "--advertise", "none", "--log-dir", str(d / "nodeserver-logs"),
                           "--ruleserver", ruleserver.url, "--workers", str(workers), "--root", str(d / "root"))
            wait_node_ready(node)
            rule = RuleClient(ruleserver.port)
            log(f"burst: {n_tasks} tasks released at once")
            burst = run_phase(rule, [ruleserver, node], n_tasks, None)
            log(f"  {burst['tasks_per_s']} tasks/s")
            log(f"paced: {n_tasks} tasks at {rate:g} tasks/s in chunks of {CHUNK}")
            paced = run_phase(rule, [ruleserver, node], n_tasks, rate)
            log(f"  p50 {paced['p50_ms']} ms, p99 {paced['p99_ms']} ms")
        finally:
            if node is not None:
                node.stop()
            ruleserver.stop()
    return {"workers": workers, "cpus": os.cpu_count(), "advert_interval": advert_interval,
            "burst": burst, "paced": paced,
            "pass": {"tasks_per_s": burst["tasks_per_s"] >= TARGET_TASKS_PER_S,
                     "exactly_once": burst["exactly_once"] and paced["exactly_once"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks per phase (default 20,000)")
    parser.add_argument("--rate", type=float, default=500.0, help="release rate of the paced phase, tasks/s")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the node server")
    parser.add_argument("--quick", action="store_true", help="2,000 tasks per phase")
    parser.add_argument("--tmp", type=Path, default=None, help="directory for journals and logs")
    parser.add_argument("--advert-interval", type=float, default=None,
                        help="the rule server's --advert-interval (default: its own)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = 2_000
    report: dict = {"benchmark": "tasks_e2e"}
    try:
        report.update(run_benchmark(args.tasks, args.rate, args.workers, args.tmp, args.advert_interval))
    except Exception as e:  # one JSON line whatever happens
        traceback.print_exc()
        report["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
