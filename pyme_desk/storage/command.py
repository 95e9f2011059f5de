"""``pyme-desk dataserver``: serve a data root headless until Ctrl-C / SIGTERM / Ctrl-Break."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pyme_desk.config import Config, read_token_file
from pyme_desk.discovery.addresses import is_loopback
from pyme_desk.errors import refuse_root
from pyme_desk.foreground import add_server_arguments, checked_port, serve_until_stopped
from pyme_desk.logs import configure_service_logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="directory to serve (config: dataserver-root)")
    parser.add_argument("--filter", dest="server_filter", help="cluster name (config: dataserver-filter)")
    parser.add_argument("--token-file", type=Path, help="file whose first line is the cluster token")
    parser.add_argument("--insecure-open-writes", action="store_true",
                        help="allow writes without a token when bound off loopback (isolated networks only)")
    add_server_arguments(parser, "dataserver-port")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.storage.server import DataServer

    refuse_root("data server")
    root = args.root or config.data_root
    port = checked_port(config.get("dataserver-port") if args.port is None else args.port)
    bind = args.bind or config.get("desk-bind")
    loopback = is_loopback(bind)
    # writes from this machine need no token; from the network they do (an explicit
    # --token-file always applies)
    token = read_token_file(args.token_file) if args.token_file else (None if loopback else config.cluster_token)
    advertise = args.advertise or ("local" if loopback else "zeroconf")
    configure_service_logging("dataserver", args.log_dir or config.get("desk-log-dir"),
                              data_root=root, verbose=args.verbose)
    server = DataServer(root, port=port, bind=bind,
                        server_filter=args.server_filter or config.server_filter, token=token,
                        advertise=advertise, advertise_address=args.advertise_address,
                        allow_open_writes=args.insecure_open_writes,
                        h5r_flush_interval=float(config.get("h5r-flush_interval")))
    return serve_until_stopped(server, f"pyme-desk dataserver ready at {{url}} serving {server.root.path}",
                               args.port_file)
