"""``pyme-desk ruleserver``: hand out analysis tasks until Ctrl-C / SIGTERM / Ctrl-Break."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.discovery.addresses import is_loopback
from pyme_desk.errors import UsageError, refuse_root
from pyme_desk.logs import configure_service_logging, default_log_dir
from pyme_desk.foreground import add_server_arguments, checked_port, serve_until_stopped

log = logging.getLogger(__name__)

#: config keys of our own (PYME has no setting for these)
TASK_TIMEOUT_KEY = "desk-ruleserver-task-timeout"
JOURNAL_KEY = "desk-ruleserver-journal"
DEFAULT_TASK_TIMEOUT = 600.0


def default_journal() -> Path:
    """``ruleserver-journal.sqlite`` next to the log directory (per user, never in a data root)."""
    return default_log_dir().parent / "ruleserver-journal.sqlite"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journal", type=Path,
                        help=f"sqlite file that keeps rules across restarts (config: {JOURNAL_KEY}; "
                             f"default: {default_journal()})")
    parser.add_argument("--no-journal", action="store_true", help="keep rules in memory only")
    parser.add_argument("--task-timeout", type=float,
                        help=f"seconds a task may run before it is re-queued (config: {TASK_TIMEOUT_KEY}; "
                             f"default {DEFAULT_TASK_TIMEOUT:.0f})")
    parser.add_argument("--retries", type=int, help="re-queues before a task fails (config: ruleserver-retries)")
    parser.add_argument("--lease-timeout", type=float, default=6.0,
                        help="seconds without a heartbeat before a node's tasks are re-queued (default 6)")
    parser.add_argument("--advert-interval", type=float,
                        help="shortest time between two rebuilds of the task adverts, in seconds: lower "
                             "hands out new tasks sooner, at some CPU cost for big rules (default 0.05)")
    add_server_arguments(parser, "ruleserver-port")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.scheduler.server import RuleServer

    refuse_root("rule server")
    port = checked_port(config.get("ruleserver-port") if args.port is None else args.port)
    bind = args.bind or config.get("desk-bind")
    advertise = args.advertise or ("local" if is_loopback(bind) else "zeroconf")
    task_timeout = float(args.task_timeout if args.task_timeout is not None
                         else config.get(TASK_TIMEOUT_KEY, DEFAULT_TASK_TIMEOUT))
    retries = int(args.retries if args.retries is not None else config.get("ruleserver-retries"))
    if args.no_journal:
        journal = None
    else:
        journal = args.journal or (Path(config.get(JOURNAL_KEY)).expanduser() if config.get(JOURNAL_KEY)
                                   else default_journal())
    tuning = {}
    if args.advert_interval is not None:
        if not 0 <= args.advert_interval <= 60:
            raise UsageError(f"--advert-interval must be between 0 and 60 seconds, not {args.advert_interval:g}")
        tuning["advert_interval"] = args.advert_interval
    configure_service_logging("ruleserver", args.log_dir or config.get("desk-log-dir"), verbose=args.verbose)
    server = RuleServer(port=port, bind=bind, journal=journal, task_timeout=task_timeout, retries=retries,
                        node_timeout=args.lease_timeout, advertise=advertise,
                        advertise_address=args.advertise_address, **tuning)
    ready = ("pyme-desk ruleserver ready at {url}"
             + (f" (journal {journal})" if journal else " (no journal)"))
    return serve_until_stopped(server, ready, args.port_file)
