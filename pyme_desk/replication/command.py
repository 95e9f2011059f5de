"""``pyme-desk replicate``: copy under-replicated cluster files until each is on N data servers."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from pyme_desk.config import Config, read_token_file
from pyme_desk.errors import UsageError
from pyme_desk.logs import configure_service_logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--copies", type=int, default=2, help="copies each complete file should have (default 2)")
    parser.add_argument("--server", action="append", metavar="URL",
                        help="data server URL (repeatable); default: discover the cluster's servers")
    parser.add_argument("--filter", dest="server_filter", help="cluster name (config: dataserver-filter)")
    parser.add_argument("--once", action="store_true", help="scan once, print the report as JSON and exit "
                                                            "(exit code 1 if files remain under-replicated)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between scans (default 60)")
    parser.add_argument("--quiet", type=float, default=60.0, dest="quiet_s",
                        help="copy a file only once it has been unchanged this long (s, default 60)")
    parser.add_argument("--workers", type=int, default=4, help="copies made at once (default 4)")
    parser.add_argument("--token-file", type=Path, help="file whose first line is the cluster token")
    parser.add_argument("--log-dir", type=Path, help="log directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.cluster import ClusterClient
    from pyme_desk.replication.replicator import Replicator

    if args.copies < 1:
        raise UsageError("--copies must be at least 1")
    if args.interval <= 0 or args.quiet_s < 0 or args.workers < 1:
        raise UsageError("--interval must be positive, --quiet not negative and --workers at least 1")
    configure_service_logging("replicate", args.log_dir or config.get("desk-log-dir"), verbose=args.verbose)
    token = read_token_file(args.token_file) if args.token_file else config.cluster_token
    client = ClusterClient(args.server, server_filter=args.server_filter or config.server_filter,
                           token=token or "")
    replicator = Replicator(client, copies=args.copies, quiet_s=args.quiet_s, workers=args.workers)
    try:
        if args.once:
            report = replicator.scan_once()
            print(json.dumps(report, indent=1))
            return 1 if report["under_replicated_count"] or report["mismatched"] else 0
        stop = threading.Event()
        for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda signum, frame: stop.set())
        print(f"pyme-desk replicate: keeping {args.copies} copies on cluster {client.server_filter!r}, "
              f"scanning every {args.interval:g} s", flush=True)
        thread = threading.Thread(target=replicator.run, args=(args.interval, stop), daemon=True)
        thread.start()
        while not stop.wait(args.interval):
            _print_progress(replicator.status())
        thread.join(30)
        return 0
    finally:
        client.close()


def _print_progress(status: dict) -> None:
    scan = status.get("last_scan") or {}
    print(f"scans {status['scans']}, copied {status['copied_files']} file(s) / "
          f"{status['copied_bytes'] / 2**20:.1f} MiB, in progress {len(status['in_progress'])}, "
          f"under-replicated {scan.get('under_replicated_count', '?')}", flush=True)
