"""``pyme-desk webdav``: serve the cluster as a WebDAV share (map it as a network drive).

HTTP Basic sends the password with every request, so off loopback the share needs TLS.
A self-signed certificate for a lab network::

    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$(hostname)" \\
        -addext "subjectAltName=DNS:$(hostname)" -keyout webdav-key.pem -out webdav-cert.pem
    pyme-desk webdav --bind 0.0.0.0 --cert webdav-cert.pem --key webdav-key.pem

then trust ``webdav-cert.pem`` on each client (Windows: import it into "Trusted Root
Certification Authorities" of the local machine; macOS: add it to the System keychain and mark
it trusted) and map ``https://<host>:9090/``.  No registry change is needed on Windows.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from pyme_desk.config import Config, read_token_file, user_config_dir
from pyme_desk.errors import refuse_root
from pyme_desk.logs import configure_service_logging

log = logging.getLogger(__name__)

#: the users file used when neither --users nor desk-webdav-users names one
DEFAULT_USERS_FILE_NAME = "webdav-users"


def default_users_file(config: Config) -> Path:
    configured = config.get("desk-webdav-users")
    return Path(configured) if configured else user_config_dir() / DEFAULT_USERS_FILE_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "TLS with a self-signed certificate: see 'python -m pydoc pyme_desk.webdav.command'."
    parser.add_argument("--port", type=int, default=9090, help="TCP port (default 9090; 0 for any free one)")
    parser.add_argument("--bind", help="address to listen on (default 127.0.0.1; others need --cert/--key)")
    parser.add_argument("--users", type=Path,
                        help="users file (default: desk-webdav-users, or ~/.PYME/webdav-users when it exists); "
                             "write it with 'pyme-desk webdav-user add NAME'")
    parser.add_argument("--read-only", action="store_true", help="refuse every write")
    parser.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
    parser.add_argument("--key", type=Path, help="TLS private key (PEM)")
    parser.add_argument("--server", action="append", metavar="URL",
                        help="data server URL (repeatable); default: discover the cluster's servers")
    parser.add_argument("--filter", dest="server_filter", help="cluster name (config: dataserver-filter)")
    parser.add_argument("--token-file", type=Path,
                        help="file whose first line is the cluster token (also lets user 'cluster' log in with it)")
    parser.add_argument("--port-file", type=Path, help="write {url, port, pid} as JSON here once listening")
    parser.add_argument("--log-dir", type=Path, help="log directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.cluster import ClusterClient
    from pyme_desk.foreground import checked_port, write_port_file
    from pyme_desk.webdav.server import WebDAVServer

    refuse_root("WebDAV server")
    port = checked_port(args.port)
    token = read_token_file(args.token_file) if args.token_file else config.cluster_token
    users = args.users
    if users is None and default_users_file(config).is_file():
        users = default_users_file(config)
    configure_service_logging("webdav", args.log_dir or config.get("desk-log-dir"), verbose=args.verbose)
    client = ClusterClient(args.server, server_filter=args.server_filter or config.server_filter,
                           token=token or "")
    server = WebDAVServer(client, bind=args.bind or config.get("desk-bind"), port=port,
                          users_file=users, token=token, read_only=args.read_only,
                          cert=args.cert, key=args.key)
    stop = threading.Event()
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), lambda signum, frame: stop.set())
    server.start()
    if args.port_file:
        write_port_file(args.port_file, server.url, server.port)
    print(f"pyme-desk webdav ready at {server.url} (cluster {client.server_filter!r}"
          f"{', read-only' if args.read_only else ''})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        client.close()
    return 0
