"""A pyme-desk service as a child process for the benchmarks.

    with Service(workdir, "dataserver", "--root", str(root), "--advertise", "none") as server:
        requests.get(server.url + "__status")
        server.cpu_seconds()

runs ``python -m pyme_desk <command> <args...> --port 0 --port-file F`` from this checkout,
waits for the port file, and stops the process (and its children) on exit.  Its output goes to
``<workdir>/<command>.log``; a service that does not start raises :class:`ServiceError` with
the last lines of that log.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServiceError(RuntimeError):
    """A benchmarked service did not start."""


def log(message: str) -> None:
    """Progress for the person watching: stderr, so stdout keeps its one JSON line."""
    print(message, file=sys.stderr, flush=True)


def child_environment() -> dict[str, str]:
    """Our environment with this checkout importable, no user config, and (only when the
    benchmark itself runs as root, as in a container) the servers allowed to run as root."""
    env = dict(os.environ, PYME_DESK_CONFIG=os.devnull)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("PYME_DESK_ALLOW_ROOT", "1")
    return env


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of ``process`` and all its children so far."""
    try:
        procs = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


class Service:
    """One ``pyme-desk <command>`` child process on a free loopback port; see the module docstring."""

    def __init__(self, workdir: Path, command: str, *args: str, start_timeout: float = 30.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        port_file = workdir / f"{command}.port.json"
        self.log_path = workdir / f"{command}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pyme_desk", command, *args, "--port", "0", "--port-file", str(port_file)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_environment(),
                cwd=workdir)
        self.process = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                info = json.loads(port_file.read_text())
                break
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{command} did not start (exit code {self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.02)
        self.port = int(info["port"])
        self.url = str(info["url"]).rstrip("/") + "/"
        self.pid = self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU seconds of the service and its children (a node server's workers) so far."""
        return tree_cpu_seconds(self.process)

    def log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "no output"
        return " | ".join(tail) or "no output"

    def stop(self, timeout: float = 15.0) -> None:
        """Ask it to stop; kill it and whatever it started if it has not within ``timeout`` s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for p in [self.process, *self._children()]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                self.proc.wait(10)

    def _children(self) -> list[psutil.Process]:
        try:
            return self.process.children(recursive=True)
        except psutil.Error:
            return []

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
