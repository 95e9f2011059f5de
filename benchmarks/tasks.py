"""Benchmark task distribution: the rule server's raw bid/hand-in rate, and (section 2) end to end.

Raw part (``--mode raw``, the default): a rule server is started as its own process
(``python -m pyme_desk ruleserver --port 0 --advertise none --journal <tmp> --port-file F``,
journal on, as in use), one rule of ``--tasks`` tasks is posted and released, and a synthetic
bidder plays a node server: it bids for the next ``--bid-size`` task IDs at a local cost (0.01,
awarded at once) and hands the awarded tasks in as complete, until every task is done.  It does
so three ways, each on a fresh rule:

* ``keepalive``: one keep-alive bare ``http.client`` connection (the server's per-request cost);
* ``keepalive_requests``: one keep-alive ``requests.Session`` (PYME's client pattern;
  requests' own per-call cost of a few hundred microseconds shows here);
* ``fresh``: a new TCP connection per request.

For each: tasks/s, p50/p99 of the bid and hand-in round trips (ms), and the rule server's CPU
seconds.  The synthetic bidder reads the adverts only once; with ``--poll-adverts`` another
thread fetches them every 10 ms meanwhile, as busy node servers do (each bid round starts with
one), so the rule server rebuilds them once per ``--advert-interval`` (its CPU cost shows).  Afterwards ``/distributor/queues`` must report every task completed exactly once.
Reference (PYME's rule server on this machine kind, bids of 100): ~55,000 tasks/s over fresh
connections, ~1,100 tasks/s over keep-alive; target here: >= 50,000 tasks/s on keep-alive.

Progress goes to stderr; stdout receives exactly one JSON line.

    .venv/bin/python benchmarks/tasks.py                 # raw, 200,000 tasks per way
    .venv/bin/python benchmarks/tasks.py --quick         # raw, a few seconds
    .venv/bin/python benchmarks/tasks.py --poll-adverts --advert-interval 0.05
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._service import Service, log  # noqa: E402
KEEPALIVE_TARGET = 50_000  # tasks/s
TEMPLATE = json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop", "taskdef": {"frameIndex": "{{taskID}}"}})


# -- transports: call(path, body) -> parsed JSON -------------------------------------------------

def raw_keepalive(port: int) -> Callable[[str, bytes], object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(path: str, body: bytes) -> object:
        conn.request("GET", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)
    return call


def requests_keepalive(port: int) -> Callable[[str, bytes], object]:
    session = requests.Session()
    base = f"http://127.0.0.1:{port}"

    def call(path: str, body: bytes) -> object:
        r = session.get(base + path, data=body, timeout=30)
        r.raise_for_status()
        return r.json()
    return call


def fresh_connections(port: int) -> Callable[[str, bytes], object]:
    def call(path: str, body: bytes) -> object:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path, body, {"Content-Type": "application/json", "Connection": "close"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)
    return call


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class AdvertPoller:
    """Fetches ``/task_advertisements`` (gzipped, not parsed) every ``interval`` s on a thread."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        self.port = port
        self.interval = interval
        self.fetches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="advert poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self._stop.wait(self.interval):
                conn.request("GET", "/task_advertisements?nodeID=poller", headers={"Accept-Encoding": "gzip"})
                conn.getresponse().read()
                self.fetches += 1
        finally:
            conn.close()


def synthetic_bidder(server: Service, call: Callable[[str, bytes], object], n_tasks: int,
                     bid_size: int, poll_adverts: bool = False) -> dict:
    """Post a rule of ``n_tasks``, then bid/hand in ``bid_size`` at a time until all are done."""
    rule = call(f"/add_integer_id_rule?max_tasks={n_tasks}&release_start=0&release_end={n_tasks}&timeout=3600",
                json.dumps({"template": TEMPLATE}).encode())
    rule_id = rule["ruleID"]
    call("/task_advertisements?nodeID=bench", b"")
    bid_ms, handin_ms = [], []
    poller = AdvertPoller(server.port) if poll_adverts else None
    if poller is not None:
        poller.start()
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    done = 0
    for start in range(0, n_tasks, bid_size):
        ids = list(range(start, min(start + bid_size, n_tasks)))
        body = json.dumps([{"ruleID": rule_id, "taskIDs": ids, "costs": [0.01] * len(ids)}]).encode()
        t = time.perf_counter()
        won = call("/bid_on_tasks?nodeID=bench", body)[0]["taskIDs"]
        t2 = time.perf_counter()
        body = json.dumps([{"ruleID": rule_id, "taskIDs": won, "status": [3] * len(won)}]).encode()
        call("/handin?nodeID=bench", body)
        t3 = time.perf_counter()
        bid_ms.append(1e3 * (t2 - t))
        handin_ms.append(1e3 * (t3 - t2))
        done += len(won)
    elapsed = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    if poller is not None:
        poller.stop()
    info = requests.get(f"{server.url}distributor/queues", timeout=10).json()["result"][rule_id]
    return {"tasks": n_tasks, "tasks_per_s": round(done / elapsed), "seconds": round(elapsed, 3),
            "bid_p50_ms": round(statistics.median(bid_ms), 3), "bid_p99_ms": round(percentile(bid_ms, 0.99), 3),
            "handin_p50_ms": round(statistics.median(handin_ms), 3),
            "handin_p99_ms": round(percentile(handin_ms, 0.99), 3),
            "server_cpu_s": round(cpu, 3), "advert_fetches": poller.fetches if poller is not None else 0,
            "exactly_once": info["tasksCompleted"] == n_tasks and info["finished"] is True
            and info["tasksFailed"] == 0 and info["tasksRunning"] == 0}


def raw_benchmark(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="pyme-desk-tasks-", dir=args.tmp) as tmp:
        tuning = [] if args.advert_interval is None else ["--advert-interval", str(args.advert_interval)]
        server = Service(Path(tmp), "ruleserver", "--advertise", "none", "--journal", str(Path(tmp) / "journal.sqlite"),
                         "--log-dir", tmp, *tuning)
        try:
            report = {}
            ways = (("keepalive", raw_keepalive), ("keepalive_requests", requests_keepalive),
                    ("fresh", fresh_connections))
            for name, transport in ways:
                n = args.tasks if name != "fresh" else max(args.bid_size, args.tasks // 2)
                log(f"raw {name}: {n} tasks in bids of {args.bid_size}")
                call = transport(server.port)
                report[name] = synthetic_bidder(server, call, n, args.bid_size, args.poll_adverts)
                log(f"  {report[name]['tasks_per_s']} tasks/s")
        finally:
            server.stop()
    return {"bid_size": args.bid_size, "advert_interval": args.advert_interval, "poll_adverts": args.poll_adverts,
            **report,
            "pass_keepalive": report["keepalive"]["tasks_per_s"] >= KEEPALIVE_TARGET}


# -- section 2: end to end (post -> bid -> run -> hand in) ---------------------------------------
# The measurement itself lives in tasks_e2e.py (rule server + one node server with 2 workers,
# 20,000 no-op tasks; target >= 1,000 tasks/s on 2 cores); --mode e2e/all runs it from here too.

def end_to_end_benchmark(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tasks_e2e import run_benchmark

    return run_benchmark(20_000 if not args.quick else 2_000, rate=500.0, tmp=args.tmp,
                         advert_interval=args.advert_interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("raw", "e2e", "all"), default="raw",
                        help="raw: rule server alone with a synthetic bidder; e2e: with a node server")
    parser.add_argument("--tasks", type=int, default=200_000, help="tasks per raw run (default 200,000)")
    parser.add_argument("--bid-size", type=int, default=100, help="task IDs per bid (default 100)")
    parser.add_argument("--quick", action="store_true", help="20,000 tasks per raw run")
    parser.add_argument("--tmp", type=Path, default=None, help="directory for the journal and logs")
    parser.add_argument("--advert-interval", type=float, default=None,
                        help="the rule server's --advert-interval (default: its own)")
    parser.add_argument("--poll-adverts", action="store_true",
                        help="raw: fetch the adverts every 10 ms during each run, as busy node servers do")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = 20_000
    report: dict = {"benchmark": "tasks"}
    try:
        if args.mode in ("raw", "all"):
            report["raw"] = raw_benchmark(args)
        if args.mode in ("e2e", "all"):
            report["e2e"] = end_to_end_benchmark(args)
    except Exception as e:  # one JSON line whatever happens
        report["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
