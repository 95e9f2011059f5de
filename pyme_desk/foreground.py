"""Run a server object in the foreground of a command until it is asked to stop.

Every server command (data, rule, node, ...) ends the same way: stop on Ctrl-C, SIGTERM,
Windows Ctrl-Break or a broken supervisor lifeline; start; tell a parent where it listens
(``--port-file``); print one ready line; wait; stop gracefully.  This module is that ending.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Protocol

from pyme_desk.errors import UsageError
from pyme_desk.lifeline import exit_with_stdin

log = logging.getLogger(__name__)


class Server(Protocol):
    url: str
    port: int

    def start(self): ...
    def stop(self): ...


def add_server_arguments(parser: argparse.ArgumentParser, port_key: str) -> None:
    """The options every network service shares: where to listen, how to announce, where to report."""
    parser.add_argument("--port", type=int, help=f"TCP port, 0 for any free one (config: {port_key})")
    parser.add_argument("--bind", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the network)")
    parser.add_argument("--advertise", choices=("zeroconf", "local", "none"),
                        help="announce on the network (zeroconf), to this machine (local: sqlite "
                             "registry), or not at all; default: local on loopback, zeroconf otherwise")
    parser.add_argument("--advertise-address", help="IPv4 address to announce (default: the default-route interface)")
    parser.add_argument("--port-file", type=Path, help="write {url, port, pid} as JSON here once listening")
    parser.add_argument("--log-dir", type=Path, help="log directory (never inside a data root)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")


def checked_port(port) -> int:
    """A TCP port from an option or the config; UsageError (one line, exit 2) when out of range."""
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise UsageError(f"--port must be a number between 0 and 65535, not {port!r}") from None
    if not 0 <= value < 65536:
        raise UsageError(f"--port must be between 0 and 65535, not {value}")
    return value


def serve_until_stopped(server: Server, ready_message: str, port_file: Path | None = None) -> int:
    """Start ``server``, report it, block until a stop request, then stop it; returns 0.

    ``ready_message`` may use ``{url}``.
    """
    stop = threading.Event()
    install_signal_handlers(stop)
    exit_with_stdin(stop.set)  # a supervisor's child stops when the supervisor goes away
    server.start()
    if port_file:
        write_port_file(port_file, server.url, server.port)
    print(ready_message.format(url=server.url), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping: finishing requests in flight")
        server.stop()
    return 0


def write_port_file(path: Path, url: str, port: int) -> None:
    """Atomically write ``{"url", "port", "pid"}`` so a supervisor never reads half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "port": port, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


def install_signal_handlers(stop: threading.Event) -> None:
    """Ctrl-C, SIGTERM and (Windows) Ctrl-Break set ``stop``."""
    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGBREAK"):  # Windows Ctrl-Break, what a supervisor sends a console child
        signal.signal(signal.SIGBREAK, handler)
