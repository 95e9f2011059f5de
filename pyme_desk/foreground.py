"""Run a server object in the foreground of a command until it is asked to stop.

Every server command (data, rule, node, ...) ends the same way: stop on Ctrl-C, SIGTERM,
Windows Ctrl-Break or a broken supervisor lifeline; start; tell a parent where it listens
(``--port-file``); print one ready line; wait; stop gracefully.  This module is that ending.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Protocol

from pyme_desk.lifeline import exit_with_stdin

log = logging.getLogger(__name__)


class Server(Protocol):
    url: str
    port: int

    def start(self): ...
    def stop(self): ...


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
