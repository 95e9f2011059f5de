"""``pyme-desk simulate``: spool a simulated SMLM acquisition into the cluster.

Frames come from :class:`~pyme_desk.spool.simulator.SMLMSimulator` and go through a
:class:`~pyme_desk.spool.Spooler`, paced at ``--fps`` (as fast as possible with 0), with a
progress bar on stderr.  After the last frame is queued the ground truth (every emitter on in
every frame, a structured ``.npy``) is stored as ``<series>/ground_truth.npy``; only then does
the spooler finish, so ``events.json`` — the completion marker — is still the last file written
and a reader that sees the series complete also finds its ground truth.
"""
from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np
from tqdm import tqdm

from pyme_desk.cluster import ClusterClient, ClusterError
from pyme_desk.config import Config
from pyme_desk.errors import UsageError
from pyme_desk.spool.simulator import STRUCTURES, SMLMSimulator
from pyme_desk.spool.spooler import SpoolError, Spooler

GROUND_TRUTH_NAME = "ground_truth.npy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", required=True, metavar="NAME",
                        help="series name on the cluster, e.g. user/2024_5_1/sim_01")
    parser.add_argument("--frames", type=int, default=1000, metavar="N", help="frames to spool (default 1000)")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("W", "H"),
                        help="frame width and height in pixels (default 256 256)")
    parser.add_argument("--fps", type=float, default=50.0, metavar="F",
                        help="frames per second; 0 spools as fast as possible (default 50)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--structure", choices=STRUCTURES, default="mixed",
                        help="what the fluorophores label (default mixed)")
    parser.add_argument("--density", type=float, default=15.0, metavar="D",
                        help="fluorophores per square micrometre (default 15)")
    parser.add_argument("--compression", choices=("huffcode", "raw"), default="huffcode",
                        help="PZF compression of the frames (default huffcode)")
    parser.add_argument("--server", action="append", metavar="URL",
                        help="data server base URL (repeatable); default: discover them")
    parser.add_argument("--filter", metavar="F", default=None,
                        help="cluster name (server filter) to discover; default: config dataserver-filter")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> None:
    if args.frames < 1:
        raise UsageError("--frames must be at least 1")
    if min(args.size) < 1 or max(args.size) > 65535:
        raise UsageError("--size needs two pixel counts between 1 and 65535")
    if args.fps < 0:
        raise UsageError("--fps must be zero or more")
    if args.density < 0:
        raise UsageError("--density must be zero or more")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def run(args: argparse.Namespace, config: Config) -> int:
    _check(args)
    server_filter = args.filter if args.filter is not None else config.server_filter
    client = ClusterClient(servers=args.server, server_filter=server_filter)
    try:
        try:
            client.servers()
        except ClusterError as e:
            raise UsageError(str(e)) from None
        return _simulate(args, client)
    finally:
        client.close()


def _simulate(args: argparse.Namespace, client: ClusterClient) -> int:
    width, height = args.size
    interval = 1.0 / args.fps if args.fps > 0 else 0.0
    simulator = SMLMSimulator(width, height, seed=args.seed, structure=args.structure,
                              density=args.density, cycle_time_s=interval or 0.01)
    spooler = Spooler(args.series, simulator.metadata(), client=client, compression=args.compression)
    try:
        spooler.start()
    except (SpoolError, ClusterError) as e:
        raise UsageError(str(e)) from None
    progress = tqdm(total=args.frames, unit="frame", file=sys.stderr, disable=args.no_progress,
                    desc=spooler.series)
    try:
        start = time.monotonic()
        for i, frame in enumerate(simulator.frames(args.frames)):
            if interval:
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            spooler.put_frame(frame)
            progress.update()
            if i % 10 == 0:
                stats = spooler.stats()
                progress.set_postfix(sent=stats.frames_sent, MBps=f"{stats.mb_per_s:.1f}",
                                     queue=stats.queue_depth, refresh=False)
        # Stored before finish() so that events.json stays the last file of the series.
        client.put_file(f"{spooler.series}/{GROUND_TRUTH_NAME}", _npy_bytes(simulator.ground_truth()))
        report = spooler.finish()
    except BaseException as e:
        spooler.abort()
        if isinstance(e, (SpoolError, ClusterError)):
            print(f"pyme-desk simulate: error: {e}", file=sys.stderr)
            return 1
        raise
    finally:
        progress.close()
    print(f"{report.uri}: {report.frames} frames, {report.bytes_sent / 1e6:.1f} MB "
          f"in {report.seconds:.1f} s ({report.mb_per_s:.1f} MB/s); ground truth: "
          f"{report.series}/{GROUND_TRUTH_NAME}")
    for error in report.errors:
        print(f"pyme-desk simulate: warning: {error}", file=sys.stderr)
    return 0
