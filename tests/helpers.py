"""Shared test helpers: start a pyme-desk service as a real subprocess and learn its port."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def start_service(tmp_path: Path, *args: str, env=None, timeout: float = 20.0):
    """Run ``python -m pyme_desk <args> --port-file F --log-dir D``; return (process, port-file JSON)."""
    port_file = Path(tmp_path) / "port.json"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyme_desk", *args, "--port-file", str(port_file),
         "--log-dir", str(Path(tmp_path) / "logs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_file.exists():
            return proc, json.loads(port_file.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"{args[0]} exited: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=10)
    raise AssertionError(f"{args[0]} did not start within {timeout:.0f} s")


def wait_for(predicate, timeout: float = 5.0, what: str = "the condition", interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy (and return that); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
