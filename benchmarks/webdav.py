"""Upload and download speed through the WebDAV share beside direct data-server PUT/GET.

Starts one data server and one WebDAV server in front of it (both ``python -m pyme_desk``
subprocesses on 127.0.0.1), then per round:

* PUT ``--size`` bytes straight to the data server, and the same through the WebDAV server
  (which path goes first alternates between rounds);
* GET each file back (straight, and through the WebDAV server), discarding the bytes;
* delete both files from the data root.

The client is the same bare ``http.client`` loop for both paths (1 MiB blocks, body made on
the fly), so the difference is the WebDAV server's cost.  Prints one JSON line: MB/s
(10^6 bytes/s, median of ``--rounds``; every round's figure under ``all_MBps``), the
WebDAV/direct ratios of the medians and whether each reaches the target of 0.5.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._service import Service  # noqa: E402
from pyme_desk.webdav.auth import set_user  # noqa: E402

TARGET_RATIO = 0.5
BLOCK = 1 << 20
USER, PASSWORD = "bench", "benchmark-password"


def put(url: str, size: int, headers: dict[str, str]) -> float:
    """Seconds to PUT ``size`` bytes to ``url``."""
    parts = urlsplit(url)
    block = bytes(range(256)) * (BLOCK // 256)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    t0 = time.perf_counter()
    conn.putrequest("PUT", parts.path)
    conn.putheader("Content-Length", str(size))
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    left = size
    while left:
        n = min(left, BLOCK)
        conn.send(block if n == BLOCK else block[:n])
        left -= n
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    if response.status not in (200, 201, 204):
        raise SystemExit(f"PUT {url}: HTTP {response.status}")
    return elapsed


def get(url: str, size: int, headers: dict[str, str]) -> float:
    """Seconds to GET ``url`` (checking it has ``size`` bytes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    t0 = time.perf_counter()
    conn.request("GET", parts.path, headers=headers)
    response = conn.getresponse()
    got = 0
    buf = bytearray(BLOCK)
    while n := response.readinto(buf):
        got += n
    elapsed = time.perf_counter() - t0
    conn.close()
    if response.status != 200 or got != size:
        raise SystemExit(f"GET {url}: HTTP {response.status}, {got} of {size} bytes")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2**30, help="bytes per file (default 1 GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--tmp", type=Path, help="directory for the data root (default: system temp)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="webdav-bench-", dir=args.tmp))
    services: list[Service] = []
    try:
        users = work / "users"
        set_user(users, USER, PASSWORD)
        services.append(Service(work, "dataserver", "--root", str(work / "root"), "--advertise", "none",
                                "--log-dir", str(work / "logs")))
        data_url = services[0].url
        services.append(Service(work, "webdav", "--users", str(users), "--server", data_url, "--filter", "bench",
                                "--log-dir", str(work / "logs")))
        dav_url = services[1].url
        auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
        rates: dict[str, list[float]] = {}
        root = work / "root"
        for r in range(args.rounds):
            paths = [("direct", data_url, {}), ("webdav", dav_url, auth)]
            if r % 2:
                paths.reverse()  # alternate which path goes first: the first write of a round is often faster
            timings = {}
            for name, base, headers in paths:
                timings[f"{name}_put"] = put(f"{base}{name}{r}.bin", args.size, headers)
            for name, base, headers in paths:
                timings[f"{name}_get"] = get(f"{base}{name}{r}.bin", args.size, headers)
            for name, _, _ in paths:
                (root / f"{name}{r}.bin").unlink()  # keep the data root (and page cache) small
            for key, seconds in timings.items():
                rate = args.size / seconds / 1e6
                rates.setdefault(key, []).append(rate)
                print(f"round {r + 1}: {key} {rate:.0f} MB/s", file=sys.stderr)
        median = {key: statistics.median(values) for key, values in rates.items()}
        upload = median["webdav_put"] / median["direct_put"]
        download = median["webdav_get"] / median["direct_get"]
        print(json.dumps({
            "benchmark": "webdav", "size_bytes": args.size, "rounds": args.rounds, "cpus": os.cpu_count(),
            **{f"{key}_MBps": round(value, 1) for key, value in median.items()},
            "all_MBps": {key: [round(v) for v in values] for key, values in rates.items()},
            "upload_ratio": round(upload, 3), "download_ratio": round(download, 3), "target_ratio": TARGET_RATIO,
            "pass": {"upload": upload >= TARGET_RATIO, "download": download >= TARGET_RATIO},
        }))
    finally:
        for service in reversed(services):
            service.stop(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
