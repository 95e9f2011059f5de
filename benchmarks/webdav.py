"""Upload and download speed through the WebDAV share beside direct data-server PUT/GET.

Starts one data server and one WebDAV server in front of it (both ``python -m pyme_desk``
subprocesses on 127.0.0.1), then per round:

* PUT ``--size`` bytes straight to the data server, and the same through the WebDAV server;
* GET each file back (straight, and through the WebDAV server), discarding the bytes.

The client is the same bare ``http.client`` loop for both paths (1 MiB blocks, body made on
the fly), so the difference is the WebDAV server's cost.  Prints one JSON line: MB/s
(10^6 bytes/s, best of ``--rounds``), the WebDAV/direct ratios and whether each reaches the
target of 0.5.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyme_desk.webdav.auth import set_user  # noqa: E402

TARGET_RATIO = 0.5
BLOCK = 1 << 20
USER, PASSWORD = "bench", "benchmark-password"


def start(args: list[str], port_file: Path, env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "pyme_desk", *args, "--port", "0", "--port-file", str(port_file)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{args[0]} did not start: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{args[0]} did not start within 30 s")
        time.sleep(0.05)
    return proc, json.loads(port_file.read_text())["url"]


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
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is reported (default 2)")
    parser.add_argument("--tmp", type=Path, help="directory for the data root (default: system temp)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="webdav-bench-", dir=args.tmp))
    env = dict(os.environ, PYME_DESK_CONFIG=os.devnull, PYTHONPATH=str(REPO))
    procs: list[subprocess.Popen] = []
    try:
        users = work / "users"
        set_user(users, USER, PASSWORD)
        data, data_url = start(["dataserver", "--root", str(work / "root"), "--advertise", "none",
                                "--log-dir", str(work / "logs")], work / "data.json", env)
        procs.append(data)
        dav, dav_url = start(["webdav", "--users", str(users), "--server", data_url, "--filter", "bench",
                              "--log-dir", str(work / "logs")], work / "dav.json", env)
        procs.append(dav)
        auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
        best: dict[str, float] = {}
        for r in range(args.rounds):
            timings = {
                "direct_put": put(f"{data_url}direct{r}.bin", args.size, {}),
                "webdav_put": put(f"{dav_url}webdav{r}.bin", args.size, auth),
                "direct_get": get(f"{data_url}direct{r}.bin", args.size, {}),
                "webdav_get": get(f"{dav_url}webdav{r}.bin", args.size, auth),
            }
            for key, seconds in timings.items():
                rate = args.size / seconds / 1e6
                best[key] = max(best.get(key, 0.0), rate)
                print(f"round {r + 1}: {key} {rate:.0f} MB/s", file=sys.stderr)
        upload = best["webdav_put"] / best["direct_put"]
        download = best["webdav_get"] / best["direct_get"]
        print(json.dumps({
            "benchmark": "webdav", "size_bytes": args.size, "rounds": args.rounds, "cpus": os.cpu_count(),
            "direct_put_MBps": round(best["direct_put"], 1), "webdav_put_MBps": round(best["webdav_put"], 1),
            "direct_get_MBps": round(best["direct_get"], 1), "webdav_get_MBps": round(best["webdav_get"], 1),
            "upload_ratio": round(upload, 3), "download_ratio": round(download, 3), "target_ratio": TARGET_RATIO,
            "pass": {"upload": upload >= TARGET_RATIO, "download": download >= TARGET_RATIO},
        }))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
