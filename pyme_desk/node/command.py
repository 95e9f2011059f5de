"""``pyme-desk nodeserver``: run a node server and its workers until Ctrl-C / SIGTERM / Ctrl-Break
(or, under a supervisor, until its stdin lifeline closes)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.discovery.addresses import is_loopback
from pyme_desk.errors import refuse_root
from pyme_desk.foreground import add_server_arguments, checked_port, serve_until_stopped
from pyme_desk.logs import configure_service_logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ruleserver", default="auto",
                        help="the rule server's URL, or 'auto' to find it (default) and find it again "
                             "whenever it restarts")
    parser.add_argument("--workers", type=int, help="worker processes (config: nodeserver-num_workers; "
                                                    "default: CPU count)")
    parser.add_argument("--server", action="append", metavar="URL", dest="servers",
                        help="a data server of the cluster (repeatable; default: discover them)")
    parser.add_argument("--root", type=Path, help="this machine's data root, for bidding on the tasks "
                                                  "whose data it holds (config: dataserver-root)")
    parser.add_argument("--filter", dest="server_filter", help="cluster name (config: dataserver-filter)")
    parser.add_argument("--chunk-size", type=int, help="tasks queued per worker (config: nodeserver-chunksize)")
    add_server_arguments(parser, "nodeserver-port")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.node.server import NodeServer

    refuse_root("node server")
    port = checked_port(config.get("nodeserver-port") if args.port is None else args.port)
    bind = args.bind or config.get("desk-bind")
    workers = args.workers if args.workers is not None else config.get("nodeserver-num_workers")
    chunk = args.chunk_size if args.chunk_size is not None else config.get("nodeserver-chunksize")
    root = args.root or config.data_root
    log_dir = args.log_dir or config.get("desk-log-dir")
    advertise = args.advertise or ("local" if is_loopback(bind) else "zeroconf")
    log_file = configure_service_logging("nodeserver", log_dir, data_root=root, verbose=args.verbose)
    node = NodeServer(ruleserver=args.ruleserver, workers=workers, port=port, bind=bind,
                      data_root=root, server_filter=args.server_filter or config.server_filter,
                      servers=args.servers, advertise=advertise, advertise_address=args.advertise_address,
                      chunk_size=int(chunk), worker_get_timeout=float(config.get("nodeserver-worker-get-timeout")),
                      allow_nonlocal=bool(config.get("rulenodeserver-nonlocal")),
                      log_dir=log_file.parent)
    where = node.link.fixed_url or "the rule server it finds"
    return serve_until_stopped(node, f"pyme-desk nodeserver ready at {{url}} with {node.n_workers} workers, "
                                     f"bidding on {where}", args.port_file)
