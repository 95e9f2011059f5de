"""Benchmark spooling 2048 x 2048 uint16 camera frames to a local data server on loopback.

One ``pyme-desk dataserver`` subprocess serves a data root in ``--tmp``; this process plays
the camera: it hands frames to a :class:`~pyme_desk.spool.Spooler` as fast as the spooler
takes them (``put_frame`` blocks when ``--max-queue`` frames wait), for ``--seconds`` per
mode, RAW then HUFFCODE.  Measured in the same run, first, the machine's plain file-write
rate: the same RAW PZF bytes written as one file per frame into the same file system with no
HTTP (open, write, close).  Stored frames are deleted as they appear (in both cases) so a
long run does not fill the disk.

Rates are MB/s of camera data (raw pixel bytes, 1 MB = 10**6 bytes) from the first frame
handed over to the spooler's ``finish()`` returning (every frame confirmed, ``events.json``
written).  Target (issue 4): RAW sustained >= 800 MB/s, or >= 0.8 x the plain write rate
when the disk itself is slower.  Progress goes to stderr, exactly one JSON line to stdout.

    .venv/bin/python benchmarks/spool.py [--seconds 30] [--size 2048]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `pyme_desk` importable from the tree
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks._service import Service, log  # noqa: E402
from pyme_desk.formats import pzf  # noqa: E402
from pyme_desk.spool import Spooler  # noqa: E402

TARGET_MB_S = 800.0
TARGET_FRACTION_OF_DISK = 0.8


def camera_frames(size: int, n: int = 4) -> list[np.ndarray]:
    """``n`` realistic SMLM frames (the PZF benchmark's generator), cycled by the 'camera'."""
    spec = importlib.util.spec_from_file_location("_pzf_bench", Path(__file__).with_name("pzf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [module.smlm_frame((size, size), n_spots=300 * (size // 512) ** 2 // 16 + 50, seed=k)
            for k in range(n)]


class Janitor:
    """Deletes finished frame files in ``folder`` as they appear, keeping the disk from filling."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Janitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sweep()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sweep()

    def sweep(self) -> None:
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return
        for e in entries:
            if e.name.startswith("frame") and e.name.endswith(".pzf"):
                try:
                    os.unlink(e.path)
                except OSError:
                    pass


def sync_disk() -> None:
    """Flush dirty pages so one phase's write-back does not slow the next (POSIX only)."""
    if hasattr(os, "sync"):
        os.sync()


def plain_write(folder: Path, blobs: list[bytes], seconds: float) -> dict:
    """Write the blobs as frame files (cycling) for ``seconds``; MB/s of pixel bytes."""
    folder.mkdir(parents=True)
    pixel_bytes = len(blobs[0]) - pzf.HEADER_SIZE
    n = 0
    with Janitor(folder):
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            with open(folder / f"frame{n:05d}.pzf", "wb") as f:
                f.write(blobs[n % len(blobs)])
            n += 1
        elapsed = time.perf_counter() - started
    return {"frames": n, "seconds": round(elapsed, 2), "MBps": round(n * pixel_bytes / 1e6 / elapsed, 1)}


def spool(url: str, root: Path, frames: list[np.ndarray], compression: str, seconds: float,
          max_queue: int) -> dict:
    series = f"bench/{compression}_{os.getpid()}"
    sp = Spooler(series, {"Camera.ADOffset": 100, "voxelsize.x": 0.1, "voxelsize.y": 0.1},
                 servers=[url], server_filter="", token="", compression=compression,
                 max_queue=max_queue, chunk_size=50)
    sp.start()
    n = 0
    with Janitor(root / series):
        started = last_report = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sp.put_frame(frames[n % len(frames)])
            n += 1
            now = time.perf_counter()
            if now - last_report >= 2.0:
                last_report = now
                s = sp.stats()
                log(f"  {compression}: {now - started:5.1f} s, {s.frames_sent} frames stored, "
                    f"{s.frames_sent * frames[0].nbytes / 1e6 / (now - started):.0f} MB/s, "
                    f"queue {s.queue_depth}")
        report = sp.finish(timeout=300)
        elapsed = time.perf_counter() - started
    pixel_bytes = report.frames * frames[0].nbytes
    return {"frames": report.frames, "seconds": round(elapsed, 2),
            "MBps": round(pixel_bytes / 1e6 / elapsed, 1),
            "wire_MBps": round(report.bytes_sent / 1e6 / elapsed, 1),
            "ratio": round(pixel_bytes / max(report.bytes_sent, 1), 2),
            "errors": len(report.errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each phase (default 30)")
    parser.add_argument("--size", type=int, default=2048, help="frame edge in pixels (default 2048)")
    parser.add_argument("--max-queue", type=int, default=200, help="spooler queue bound (default 200)")
    parser.add_argument("--modes", default="raw,huffcode", help="comma-separated: raw, huffcode")
    parser.add_argument("--tmp", type=Path, help="where the data root and plain-write files go "
                                                 "(default: the system temp dir)")
    args = parser.parse_args(argv)
    os.environ["PYME_DESK_CONFIG"] = os.devnull
    workdir = Path(tempfile.mkdtemp(prefix="pyme-desk-spool-bench-", dir=args.tmp))
    server = None
    try:
        log(f"generating {args.size}x{args.size} uint16 frames ...")
        frames = camera_frames(args.size)
        blobs = [pzf.encode(f, compression="raw") for f in frames]
        log(f"plain file write for {args.seconds:g} s into {workdir} ...")
        plain = plain_write(workdir / "plain", blobs, args.seconds)
        log(f"  plain write: {plain['MBps']} MB/s")
        server = Service(workdir, "dataserver", "--root", str(workdir / "root"), "--advertise", "none",
                         "--log-dir", str(workdir / "logs"))
        url = server.url
        results = {}
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            sync_disk()
            log(f"spooling {mode.upper()} for {args.seconds:g} s to {url} ...")
            results[mode] = spool(url, workdir / "root", frames, mode, args.seconds, args.max_queue)
            log(f"  {mode}: {results[mode]['MBps']} MB/s")
    finally:
        if server is not None:
            server.stop(20)
        shutil.rmtree(workdir, ignore_errors=True)
    raw = results.get("raw")
    ratio = round(raw["MBps"] / plain["MBps"], 3) if raw and plain["MBps"] else None
    passed = None if raw is None else bool(raw["MBps"] >= TARGET_MB_S or
                                           (ratio is not None and ratio >= TARGET_FRACTION_OF_DISK))
    print(json.dumps({
        "frame": f"{args.size}x{args.size} uint16", "seconds_per_phase": args.seconds,
        "cpu_count": os.cpu_count(), "plain_write": plain, **results,
        "raw_vs_plain_write": ratio,
        "target": {"raw_MBps": TARGET_MB_S, "or_fraction_of_plain_write": TARGET_FRACTION_OF_DISK},
        "pass": passed,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
