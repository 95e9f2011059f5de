"""``pyme-desk spool FILE|DIR --series NAME``: spool TIFF stacks, or a folder being filled, into the cluster.

Without ``--watch`` the TIFF file (every page a frame) or every TIFF in the folder (natural
name order) is checked first and then spooled as one series.  With ``--watch`` the folder is
watched and frames are spooled as another acquisition program writes them, until Ctrl-C, a
file named ``--done-file`` (``.done``) appears, or ``--idle-timeout`` seconds pass without
anything new; then the series is finished (``events.json`` written).  A progress bar goes to
stderr; the series URI and the achieved rate go to stdout.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from pyme_desk.config import Config
from pyme_desk.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="FILE|DIR", help="a TIFF stack, or a folder of TIFFs")
    parser.add_argument("--series", required=True, help="series name on the cluster, e.g. user/2024_5_1/cells_01")
    parser.add_argument("--server", action="append", metavar="URL",
                        help="data server URL (repeatable); default: discover the cluster's servers")
    parser.add_argument("--filter", dest="server_filter", help="cluster name (config: dataserver-filter)")
    parser.add_argument("--watch", action="store_true",
                        help="watch the folder and spool frames as another program writes them")
    parser.add_argument("--compression", choices=("raw", "huffcode"), default="huffcode",
                        help="PZF compression (default huffcode)")
    parser.add_argument("--chunk", type=int, metavar="N",
                        help="frames per server before moving on to the next (config: httpspooler-chunksize)")
    parser.add_argument("--hdf", action="store_true",
                        help="pack the series into one .h5 file on one server (for Windows data roots)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="set a metadata entry, e.g. Camera.ADOffset=100 (repeatable; VALUE may be JSON)")
    parser.add_argument("--idle-timeout", type=float, metavar="S",
                        help="with --watch: finish after S seconds without a new frame (default: never)")
    parser.add_argument("--done-file", default=".done", metavar="NAME",
                        help="with --watch: finish when a file of this name appears in the folder (default .done)")
    parser.add_argument("--poll", type=float, default=0.5, metavar="S",
                        help="with --watch: how often to look at the folder (default 0.5 s)")
    parser.add_argument("--discovery-timeout", type=float, default=5.0, metavar="S",
                        help="how long to wait for data servers to be discovered (default 5 s)")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.cluster import ClusterClient, ClusterError, NoServersError
    from pyme_desk.spool.ingest import IngestError
    from pyme_desk.spool.spooler import SpoolError

    overrides = _parse_meta(args.meta)
    chunk = args.chunk if args.chunk is not None else int(config.get("httpspooler-chunksize"))
    if chunk < 1:
        raise UsageError(f"--chunk must be at least 1, not {chunk}")
    if args.watch and not args.source.is_dir():
        raise UsageError(f"--watch needs a folder, and {args.source} is not one")
    server_filter = args.server_filter if args.server_filter is not None else config.server_filter
    try:
        client = ClusterClient(servers=args.server or None, server_filter=server_filter,
                               token=config.cluster_token or "", discovery_wait=args.discovery_timeout)
    except ClusterError as e:
        raise UsageError(str(e)) from None
    try:
        try:
            client.servers()
        except NoServersError:
            raise UsageError(f"no data servers found for cluster {server_filter!r}: start one "
                             "(pyme-desk dataserver) or name it with --server URL") from None
        job = _WatchJob(args) if args.watch else _StackJob(args)
        return job.spool(client, overrides, chunk)
    except (IngestError, SpoolError, ClusterError) as e:
        raise UsageError(str(e)) from None
    finally:
        client.close()


def _parse_meta(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--meta takes KEY=VALUE, not {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


class _Job:
    """Spool frames from one source; subclasses say where frames and metadata come from."""

    total: int | None = None

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def first_file(self) -> Path:
        raise NotImplementedError

    def frames(self) -> Iterator:
        raise NotImplementedError

    def spool(self, client, overrides: dict[str, Any], chunk: int) -> int:
        from tqdm import tqdm

        from pyme_desk.spool.ingest import tiff_metadata
        from pyme_desk.spool.spooler import Spooler

        frames = self.frames()
        first = next(frames, None)  # for a watched folder: waits for the first file
        if first is None:
            print(f"pyme-desk spool: no frames arrived in {self.args.source}; nothing spooled", file=sys.stderr)
            return 1
        metadata = {**tiff_metadata(self.first_file()), **overrides}
        spooler = Spooler(self.args.series, metadata, client=client, chunk_size=chunk,
                          compression=self.args.compression, aggregate_h5=self.args.hdf)
        spooler.start()
        bar = tqdm(total=self.total, unit="frame", file=sys.stderr, disable=None, desc=spooler.series)
        shown = time.monotonic()
        try:
            for frame in _chain(first, frames):
                spooler.put_frame(frame)
                bar.update(1)
                if time.monotonic() - shown > 0.5:
                    shown = time.monotonic()
                    s = spooler.stats()
                    bar.set_postfix_str(f"{s.mb_per_s:.0f} MB/s, queue {s.queue_depth}")
            report = spooler.finish()
        except BaseException:
            spooler.abort()
            raise
        finally:
            bar.close()
        retried = f", {len(report.errors)} PUT(s) retried elsewhere" if report.errors else ""
        print(f"spooled {report.frames} frames to {report.uri} ({report.bytes_sent / 1e6:.1f} MB, "
              f"{report.mb_per_s:.1f} MB/s{retried})", flush=True)
        return 0


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


class _StackJob(_Job):
    """A TIFF file or a folder of TIFFs, all checked before anything is sent."""

    def __init__(self, args: argparse.Namespace) -> None:
        from pyme_desk.spool.ingest import scan_tiffs

        super().__init__(args)
        self.stacks = scan_tiffs(args.source)
        self.total = sum(s.frames for s in self.stacks)

    def first_file(self) -> Path:
        return self.stacks[0].path

    def frames(self) -> Iterator:
        from pyme_desk.spool.ingest import stack_frames

        return stack_frames(self.stacks)


class _WatchJob(_Job):
    """A folder another program is filling; Ctrl-C ends the watch and finishes the series."""

    def __init__(self, args: argparse.Namespace) -> None:
        from pyme_desk.spool.ingest import FolderWatcher

        super().__init__(args)
        self.watcher = FolderWatcher(args.source, poll=args.poll, idle_timeout=args.idle_timeout,
                                     done_name=args.done_file)

    def first_file(self) -> Path:
        assert self.watcher.first_file is not None
        return self.watcher.first_file

    def frames(self) -> Iterator:
        if threading.current_thread() is not threading.main_thread():  # signals need the main thread
            yield from self.watcher.frames()
            return
        previous = signal.signal(signal.SIGINT, lambda *_: self.watcher.stop())
        try:
            yield from self.watcher.frames()
        finally:
            signal.signal(signal.SIGINT, previous)

    def spool(self, client, overrides: dict[str, Any], chunk: int) -> int:
        print(f"watching {self.args.source} (Ctrl-C or a file named {self.args.done_file!r} finishes "
              "the series)", file=sys.stderr, flush=True)
        return super().spool(client, overrides, chunk)
