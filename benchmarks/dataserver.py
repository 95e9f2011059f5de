"""Benchmark our data server against nginx (WebDAV PUT) on loopback, side by side.

Workload per server, each on a fresh data root and a freshly started server:

* listing: time to GET a directory of 10,000 files; ``cold`` is the first listing after the
  server starts, ``warm`` the median of the listings that follow (nginx: JSON autoindex);
* large files: PUT then GET 100 x 8 MiB (one sCMOS frame each), in MB/s (1 MB = 10**6 bytes);
* small files: PUT then GET 2000 x 10 KiB in files/s, three ways: over one keep-alive
  ``requests.Session`` like PYME's client (``keepalive``; requests' own per-call cost of a few
  hundred microseconds caps this one), over one keep-alive bare ``http.client`` connection
  (``keepalive_raw``: shows the server's per-request cost), and with a new connection per
  request (``fresh``).

Keys ending in ``_cpu_s`` are the server's CPU seconds (process and children) in that phase.

With ``--rounds N`` every round runs both servers (alternating which goes first) and the
report gives per-metric medians; ratios (ours / nginx) are medians of the per-round ratios,
since big-file ratios swing by tens of percent between rounds on a small machine.

Progress goes to stderr; stdout receives exactly one JSON line.

    .venv/bin/python benchmarks/dataserver.py --rounds 3
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import psutil
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._nginx import NginxUnavailable, NginxWebDAV, find_nginx  # noqa: E402
from benchmarks._service import Service, ServiceError, log, tree_cpu_seconds  # noqa: E402

MiB = 1024 * 1024
KiB = 1024


@dataclass(frozen=True)
class Workload:
    """How much each server is asked to do in one round."""

    big_count: int
    big_size: int
    small_count: int
    small_size: int
    listing_files: int
    warm_listings: int


FULL = Workload(big_count=100, big_size=8 * MiB, small_count=2000, small_size=10 * KiB,
                listing_files=10_000, warm_listings=5)
QUICK = Workload(big_count=8, big_size=1 * MiB, small_count=200, small_size=10 * KiB,
                 listing_files=1000, warm_listings=3)

#: metric -> (minimum ratio ours/nginx) for throughput targets.
RATIO_TARGETS = {
    "put_big_MBps": 0.8,
    "get_big_MBps": 0.8,
    "put_small_keepalive_fps": 0.5,
    "get_small_keepalive_fps": 0.5,
}
#: metric -> maximum milliseconds for our server, whatever nginx does.
TIME_TARGETS_MS = {"list_warm_ms": 5.0, "list_cold_ms": 50.0}


class BenchmarkError(RuntimeError):
    """A server misbehaved (wrong status, short body)."""


# --------------------------------------------------------------------------- client side

def _check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchmarkError(what)


def _session_request(session: requests.Session, url: str, method: str, path: str,
                     body: bytes | None) -> tuple[int, bytes]:
    """One request over the shared keep-alive ``requests.Session`` (PYME's client pattern)."""
    r = session.request(method, url + path, data=body, timeout=30)
    return r.status_code, r.content


def _raw_request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None
                 ) -> tuple[int, bytes]:
    """One request over a persistent bare ``http.client`` connection (little client overhead)."""
    conn.request(method, "/" + path, body=body)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _fresh_request(host: str, port: int, method: str, path: str, body: bytes | None
                   ) -> tuple[int, bytes]:
    """One request on its own new TCP connection, closed afterwards."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        return _raw_request(conn, method, path, body)
    finally:
        conn.close()


def _get_body(session: requests.Session, url: str) -> tuple[int, bytes]:
    """GET the whole body in one read (lighter on the client than ``response.content``)."""
    with session.get(url, stream=True, timeout=60) as r:
        return r.status_code, r.raw.read()


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def prepare_root(root: Path, workload: Workload) -> None:
    """Create the files that exist before the server starts: the listing directory."""
    listing = root / "listing"
    listing.mkdir(parents=True)
    for i in range(workload.listing_files):
        (listing / f"frame{i:05d}.pzf").write_bytes(b"")
    (root / "hello.txt").write_bytes(b"hello")


def run_workload(url: str, pid: int, workload: Workload) -> dict[str, float]:
    """Run every phase against the server at ``url`` and return its metrics.

    Keys ending in ``_cpu_s`` are the server's CPU seconds spent in that phase.
    """
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    results: dict[str, float] = {}
    big = os.urandom(workload.big_size)
    small = os.urandom(workload.small_size)
    session = requests.Session()

    server = psutil.Process(pid)

    def phase(name: str, fn: Callable[[], None]) -> float:
        cpu0 = tree_cpu_seconds(server)
        elapsed = _timed(fn)
        results[f"{name}_cpu_s"] = round(tree_cpu_seconds(server) - cpu0, 3)
        return elapsed

    try:
        # Open the keep-alive connection first, so the cold listing measures only the listing.
        _check(session.get(url + "hello.txt", timeout=10).status_code == 200, "GET hello.txt failed")

        def listing() -> None:
            r = session.get(url + "listing/", timeout=60)
            _check(r.status_code == 200, f"listing returned HTTP {r.status_code}")

        results["list_cold_ms"] = phase("list_cold", listing) * 1000
        warm = [_timed(listing) * 1000 for _ in range(workload.warm_listings)]
        results["list_warm_ms"] = statistics.median(warm)
        n_listed = len(session.get(url + "listing/", timeout=60).json())
        _check(n_listed == workload.listing_files,
               f"listing has {n_listed} entries, expected {workload.listing_files}")

        big_names = [f"big/frame{i:05d}.dat" for i in range(workload.big_count)]
        big_bytes = workload.big_count * workload.big_size

        def put_big() -> None:
            for name in big_names:
                r = session.put(url + name, data=big, timeout=60)
                _check(r.status_code in (200, 201), f"PUT {name}: HTTP {r.status_code}")

        def get_big() -> None:
            for name in big_names:
                status, body = _get_body(session, url + name)
                _check(status == 200 and len(body) == workload.big_size,
                       f"GET {name}: HTTP {status}, {len(body)} bytes")

        results["put_big_MBps"] = big_bytes / phase("put_big", put_big) / 1e6
        results["get_big_MBps"] = big_bytes / phase("get_big", get_big) / 1e6

        n = workload.small_count
        raw_conn = http.client.HTTPConnection(host, int(port), timeout=30)
        clients: dict[str, Callable[[str, str, bytes | None], tuple[int, bytes]]] = {
            "keepalive": lambda method, path, body: _session_request(session, url, method, path, body),
            "keepalive_raw": lambda method, path, body: _raw_request(raw_conn, method, path, body),
            "fresh": lambda method, path, body: _fresh_request(host, int(port), method, path, body),
        }
        try:
            for client_name, request in clients.items():
                names = [f"small_{client_name}/f{i:05d}.dat" for i in range(n)]

                def put_small() -> None:
                    for name in names:
                        status, _ = request("PUT", name, small)
                        _check(status in (200, 201), f"PUT {name}: HTTP {status}")

                def get_small() -> None:
                    for name in names:
                        status, body = request("GET", name, None)
                        _check(status == 200 and len(body) == workload.small_size,
                               f"GET {name}: HTTP {status}, {len(body)} bytes")

                results[f"put_small_{client_name}_fps"] = n / phase(f"put_small_{client_name}", put_small)
                results[f"get_small_{client_name}_fps"] = n / phase(f"get_small_{client_name}", get_small)
        finally:
            raw_conn.close()
    finally:
        session.close()
    return {k: round(v, 3) for k, v in results.items()}


# --------------------------------------------------------------------------- rounds

def run_side(side: str, base: Path, workload: Workload) -> dict[str, float]:
    """Start one server on a fresh root, run the workload, stop it and delete the root."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=base))
    root = workdir / "data"
    try:
        prepare_root(root, workload)
        if side == "ours":
            with Service(workdir, "dataserver", "--root", str(root), "--advertise", "none",
                         start_timeout=20) as server:
                return run_workload(server.url, server.pid, workload)
        with NginxWebDAV(root) as nginx:
            return run_workload(nginx.url, nginx.pid, workload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if hasattr(os, "sync"):
            os.sync()  # start the next side without the previous side's dirty pages


def _median_by_key(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]} if rows else {}


def _is_time(metric: str) -> bool:
    return metric.endswith("_ms") or metric.endswith("_cpu_s")


def summarise(per_round: dict[str, list[dict[str, float]]], workload: Workload, rounds: int,
              quick: bool, nginx_note: str | None) -> dict:
    ours = _median_by_key(per_round["ours"])
    nginx = _median_by_key(per_round["nginx"]) if per_round["nginx"] else None
    ratios: dict[str, float] = {}
    if nginx is not None:
        for k in ours:
            pairs = [o[k] / n[k] for o, n in zip(per_round["ours"], per_round["nginx"]) if n[k] > 0]
            if pairs:
                ratios[k] = round(statistics.median(pairs), 3)
    passed: dict[str, bool | None] = {}
    for k, minimum in RATIO_TARGETS.items():
        passed[k] = None if k not in ratios else ratios[k] >= minimum
    for k, maximum in TIME_TARGETS_MS.items():
        passed[k] = ours[k] <= maximum
    report = {
        "benchmark": "dataserver",
        "mode": "quick" if quick else "full",
        "rounds": rounds,
        "workload": asdict(workload),
        "ours": ours,
        "nginx": nginx,
        "ratios_note": "ours/nginx, median of per-round ratios; for *_ms and *_cpu_s lower is better",
        "ratios": ratios,
        "targets": {**{k: f">= {v} x nginx" for k, v in RATIO_TARGETS.items()},
                    **{k: f"<= {v} ms" for k, v in TIME_TARGETS_MS.items()}},
        "pass": passed,
        "all_pass": all(v is not False for v in passed.values()),
        "per_round": per_round,
    }
    if nginx_note:
        report["nginx_skipped"] = nginx_note
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark pyme-desk's data server against nginx (WebDAV PUT) on loopback. "
                    "Prints one JSON line on stdout; progress on stderr.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (%s)" % ", ".join(f"{k}={v}" for k, v in asdict(QUICK).items()))
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="repeat both servers N times and report medians (default 1)")
    parser.add_argument("--no-nginx", action="store_true", help="measure our server only")
    parser.add_argument("--tmp", type=Path, default=None, metavar="DIR",
                        help="where to put the data roots (default: the system temp dir)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    workload = QUICK if args.quick else FULL

    sides = ["ours"]
    nginx_note = None
    if args.no_nginx:
        nginx_note = "--no-nginx given"
    else:
        if find_nginx() is None:
            nginx_note = "nginx not found (Debian: apt-get install nginx); comparison skipped"
            log(nginx_note)
        else:
            sides.append("nginx")

    per_round: dict[str, list[dict[str, float]]] = {"ours": [], "nginx": []}
    base = Path(tempfile.mkdtemp(prefix="bench-dataserver-", dir=args.tmp))
    try:
        for rnd in range(args.rounds):
            order = sides if rnd % 2 == 0 else sides[::-1]
            for side in order:
                log(f"[round {rnd + 1}/{args.rounds}] {side} ...")
                try:
                    row = run_side(side, base, workload)
                except NginxUnavailable as e:
                    nginx_note = f"{e}; comparison skipped"
                    log(nginx_note)
                    sides = ["ours"]
                    per_round["nginx"] = []
                    continue
                per_round[side].append(row)
                log("    " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if not k.endswith("_cpu_s")))
        if len(per_round["nginx"]) != len(per_round["ours"]):
            per_round["nginx"] = []  # nginx dropped out part-way: no paired comparison
        report = summarise(per_round, workload, args.rounds, args.quick, nginx_note)
    except (BenchmarkError, ServiceError, requests.RequestException, OSError) as e:
        print(json.dumps({"benchmark": "dataserver", "error": f"{type(e).__name__}: {e}"}))
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
