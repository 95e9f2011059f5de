"""``pyme-desk analyse SERIES_URI``: launch a localization analysis and follow it.

Prints progress (frames released and done, localizations per second) and, at the end, the
results file's URI.  With ``--wait`` it blocks until the rule server reports the analysis
finished and exits 1 if any task failed; without it, it returns once every frame of the
(complete) series has been released.
"""
from __future__ import annotations

import argparse
import sys
import time

from pyme_desk.errors import UsageError

PROTOCOL = "_pyme-taskdist"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("series", metavar="SERIES_URI", help="pyme-cluster://<cluster>/<series>")
    parser.add_argument("--fit", choices=("cpu", "gpu", "auto"), default="auto",
                        help="where workers fit: cpu, gpu, or auto (GPU where a worker has one; default)")
    parser.add_argument("--threshold", type=float, default=None, metavar="T",
                        help="detection threshold in units of local noise (default 5)")
    parser.add_argument("--server", action="append", metavar="URL", default=None,
                        help="data server URL http://host:port/ (repeatable; default: discover them)")
    parser.add_argument("--ruleserver", metavar="URL", default=None,
                        help="rule server URL http://host:port (default: discover it)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every task is done; exit 1 if any failed")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S", help=argparse.SUPPRESS)


def _find_ruleserver(timeout: float = 5.0) -> str:
    from pyme_desk.discovery.browser import ServiceBrowser

    with ServiceBrowser(PROTOCOL) as browser:
        browser.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in browser.services():
                if record.name.startswith(("PYMERuleServer", "PYMEDistributor")):
                    return record.url.rstrip("/")
            time.sleep(0.2)
    raise UsageError("no rule server found; start one (pyme-desk ruleserver) or pass --ruleserver URL")


def run(args: argparse.Namespace, config) -> int:
    from pyme_desk.analysis.launch import LaunchError, LocalizationLaunch
    from pyme_desk.cluster import ClusterClient
    from pyme_desk.cluster.errors import ClusterError, InvalidNameError
    from pyme_desk.cluster.uris import is_cluster_uri, parse_cluster_uri
    from pyme_desk.formats.series import SeriesError

    if not is_cluster_uri(args.series):
        raise UsageError(f"{args.series!r} is not a cluster URI (pyme-cluster://<cluster>/<series>)")
    if args.threshold is not None and not args.threshold > 0:
        raise UsageError("--threshold must be a positive number")
    server_filter = parse_cluster_uri(args.series).server_filter or config.server_filter
    client = ClusterClient(args.server, server_filter=server_filter)
    launch = None
    try:
        ruleserver = args.ruleserver or _find_ruleserver()
        launch = LocalizationLaunch(args.series, client, ruleserver, fit=args.fit,
                                    threshold=args.threshold).start()
        print(f"analysing {args.series} -> {launch.results_uri} (rule {launch.rule_id})", flush=True)
        return _follow(launch, args.wait, args.interval)
    except (LaunchError, SeriesError, ClusterError, InvalidNameError) as e:
        print(f"pyme-desk analyse: error: {e}", file=sys.stderr)
        return 2
    finally:
        if launch is not None:
            launch.close()
        client.close()


def _follow(launch, wait: bool, interval: float) -> int:
    started = time.monotonic()
    localizations = 0
    while True:
        progress = launch.poll()
        rows = launch.new_results()
        localizations += 0 if rows is None else len(rows)
        elapsed = max(time.monotonic() - started, 1e-9)
        done = progress.tasks_completed + progress.tasks_failed
        total = progress.frames_released if progress.release_complete else f"{progress.frames_released}+"
        print(f"\rframes {done}/{total}  failed {progress.tasks_failed}  "
              f"localizations {localizations} ({localizations / elapsed:.0f}/s)", end="", flush=True)
        if progress.finished or (not wait and progress.release_complete):
            break
        time.sleep(interval)
    print(f"\nresults: {launch.results_uri}")
    if wait and progress.tasks_failed:
        print(f"pyme-desk analyse: {progress.tasks_failed} task(s) failed; see LOGS/rules/{launch.rule_id}.log "
              "on the cluster", file=sys.stderr)
        return 1
    return 0
