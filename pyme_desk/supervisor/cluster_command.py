"""``pyme-desk cluster``: the cluster of one (data, rule and node server) on this machine.

Headless with ``--no-gui`` (or when the desktop app cannot start): prints each service's URL
once all are ready, then one status line, rewritten in place on a terminal and printed anew at
each change otherwise.  Ctrl-C, SIGTERM, Ctrl-Break and closing the Windows console stop the
services in reverse order.  A service that fails before the cluster was ever ready ends the
command with exit code 1 and its reason.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.errors import UsageError
from pyme_desk.supervisor.services import ClusterSnapshot, ServiceState
from pyme_desk.supervisor.supervisor import Supervisor

#: how long the first start may take before the command gives up
READY_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="data root to serve (config: dataserver-root)")
    parser.add_argument("--workers", type=int, help="worker processes (config: nodeserver-num_workers; "
                                                    "default: CPU count)")
    parser.add_argument("--no-gui", action="store_true", help="run headless: URLs and a status line")
    parser.add_argument("--log-dir", type=Path, help="where the services' logs go "
                                                     "(default: the per-user log directory)")


def run(args: argparse.Namespace, config: Config) -> int:
    root = getattr(args, "root", None) or config.data_root
    workers = getattr(args, "workers", None) or config.get("nodeserver-num_workers")
    if workers is not None and int(workers) < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if not getattr(args, "no_gui", False):
        gui = _desktop_app()
        if gui is not None:
            values = {**config.values, "dataserver-root": str(root), "nodeserver-num_workers": workers}
            return int(gui(args, Config(values=values, sources=config.sources, env=config.env)) or 0)
        print("pyme-desk cluster: the desktop app is not available here; running headless", flush=True)
    log_dir = getattr(args, "log_dir", None) or config.get("desk-log-dir")
    supervisor = Supervisor(Path(root), workers=workers, log_dir=Path(log_dir) if log_dir else None)
    return run_headless(supervisor)


def run_headless(supervisor: Supervisor) -> int:
    """Run ``supervisor`` until a stop signal; returns the exit code."""
    stop = threading.Event()
    changed = threading.Event()
    stop_on_signals(stop)
    supervisor.add_listener(lambda snap: changed.set())
    started = time.monotonic()
    supervisor.start()
    print(f"pyme-desk cluster: serving {supervisor.root} (logs in {supervisor.log_dir})", flush=True)
    line = _StatusLine()
    was_ready = False
    code = 0
    try:
        while not stop.is_set():
            snap = supervisor.snapshot()
            if not was_ready and snap.all_ready:
                was_ready = True
                line.clear()
                _print_ready(snap, time.monotonic() - started)
            failed = [s for s in snap.services if s.state is ServiceState.FAILED]
            if failed and not was_ready:
                line.clear()
                for s in failed:
                    print(f"pyme-desk cluster: the {s.title} failed: {s.reason}", file=sys.stderr, flush=True)
                code = 1
                break
            if not was_ready and time.monotonic() - started > READY_TIMEOUT_S:
                line.clear()
                print(f"pyme-desk cluster: not ready within {READY_TIMEOUT_S:.0f} s: {status_text(snap)}",
                      file=sys.stderr, flush=True)
                code = 1
                break
            line.show(status_text(snap))
            changed.wait(0.5)
            changed.clear()
    finally:
        line.clear()
        print("pyme-desk cluster: stopping", flush=True)
        supervisor.stop()
        print("pyme-desk cluster: stopped", flush=True)
    return code


def status_text(snap: ClusterSnapshot) -> str:
    """``data server ready · rule server starting (…) · …``"""
    parts = []
    for s in snap.services:
        text = f"{s.title} {s.state.value}"
        if s.state in (ServiceState.STARTING, ServiceState.DEGRADED, ServiceState.FAILED) and s.reason:
            text += f" ({s.reason[:80]})"
        if s.restarts:
            text += f" [{s.restarts} restarts]"
        parts.append(text)
    return " · ".join(parts)


def _print_ready(snap: ClusterSnapshot, elapsed: float) -> None:
    for s in snap.services:
        where = s.url if s.state is ServiceState.READY else f"{s.state.value}: {s.reason}"
        print(f"  {s.title:<12} {where}", flush=True)
    print(f"pyme-desk cluster: ready in {elapsed:.2f} s; Ctrl-C stops it", flush=True)


class _StatusLine:
    """One line rewritten in place on a terminal; elsewhere printed only when it changes."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = ""

    def show(self, text: str) -> None:
        if text == self.last:
            return
        self.last = text
        if self.tty:
            sys.stdout.write("\r\x1b[K" + text)
            sys.stdout.flush()
        else:
            print(text, flush=True)

    def clear(self) -> None:
        if self.tty and self.last:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
        self.last = ""


def _desktop_app():
    """The desktop app's entry point, or None without a display or without Qt."""
    if sys.platform.startswith("linux") and not any(
            os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        return None
    try:  # imported by name: nothing outside pyme_desk.gui imports Qt
        return importlib.import_module("pyme_desk.gui.app").run_gui
    except ImportError:
        return None


def stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C, SIGTERM and (Windows) Ctrl-Break or console close set ``stop``."""
    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGBREAK"):  # the C runtime maps console close to SIGBREAK too
        signal.signal(signal.SIGBREAK, handler)
