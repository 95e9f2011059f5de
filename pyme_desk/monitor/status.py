"""The data server's ``/__status`` document, sampled in the background (protocol.md §2.7).

A :class:`StatusSampler` reads the host and the GPUs on a daemon thread every ``interval``
seconds and keeps the latest document, both as a dict and as JSON bytes, so answering
``/__status`` costs one attribute read.  The keys PYME clients read are laid out exactly as
§2.7 gives them; everything we add lives under ``"Desk"``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

from pyme_desk.monitor.gpu import GPUSnapshot, gpu_snapshot
from pyme_desk.monitor.host import HostSnapshot, host_snapshot
from pyme_desk.names import computer_name

log = logging.getLogger(__name__)

#: The server identity keys of §2.7 and what they are when the caller does not say.
IDENTITY_DEFAULTS: dict[str, Any] = {
    "IPAddress": "127.0.0.1",
    "BindAddress": None,  # None -> ["", Port]
    "Port": 0,
    "Protocol": "1.1",
    "TestMode": False,
    "ComputerName": None,  # None -> pyme_desk.names.computer_name()
}

#: How long :meth:`StatusSampler.stop` waits for a sample in progress to finish.
STOP_TIMEOUT_S = 5.0


class StatusSampler:
    """Keeps a fresh ``/__status`` document for one data server.

    ``root`` is the served root (its file system gives ``Disk``).  ``identity`` supplies the
    server's ``IPAddress``, ``BindAddress``, ``Port``, ``Protocol``, ``TestMode`` and
    ``ComputerName`` (see :data:`IDENTITY_DEFAULTS`).  ``extra``, if given, is called on the
    sampling thread each time and its keys are added under ``"Desk"`` (ours win on a clash);
    if it raises, the error text is reported as ``Desk.ExtraError`` instead.
    """

    def __init__(self, root: Path, interval: float = 1.0,
                 extra: Callable[[], dict[str, Any]] | None = None,
                 identity: Mapping[str, Any] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        unknown = set(identity or {}) - set(IDENTITY_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown identity keys {sorted(unknown)}; expected {list(IDENTITY_DEFAULTS)}")
        self._root = Path(root)
        self._interval = interval
        self._extra = extra
        self._identity = _identity(identity or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host: HostSnapshot | None = None
        self._sequence = 0
        # (document, its JSON bytes), replaced whole so readers never see a half-made pair.
        self._latest: tuple[dict[str, Any], bytes] | None = None

    def start(self) -> None:
        """Take the first sample now (about 0.1 s), then keep sampling on a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("StatusSampler already started")
        self._sample()
        self._thread = threading.Thread(target=self._run, name="pyme-desk-status-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread (at most a sample in progress).  The last
        document stays readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    def document(self) -> dict[str, Any]:
        """The latest document.  Shared, not copied: treat it as read-only."""
        return self._latest_pair()[0]

    def document_bytes(self) -> bytes:
        """The latest document as UTF-8 JSON, ready to send."""
        return self._latest_pair()[1]

    def _latest_pair(self) -> tuple[dict[str, Any], bytes]:
        latest = self._latest
        if latest is None:
            raise RuntimeError("StatusSampler not started: call start() first")
        return latest

    def _run(self) -> None:
        deadline = time.monotonic() + self._interval
        while not self._stop.wait(max(deadline - time.monotonic(), 0.0)):
            try:
                self._sample()
            except Exception:  # keep serving the last good document; never let the thread die
                log.exception("status sampling failed; keeping the previous /__status document")
            deadline = max(deadline + self._interval, time.monotonic())

    def _sample(self) -> None:
        self._host = host_snapshot(self._root, self._host)
        self._sequence += 1
        document = _build_document(self._identity, self._host, gpu_snapshot(), self._sequence,
                                  self._call_extra())
        self._latest = (document, json.dumps(document).encode("utf-8"))

    def _call_extra(self) -> dict[str, Any]:
        if self._extra is None:
            return {}
        try:
            return dict(self._extra())
        except Exception as exc:  # a caller's hook must not stop status reporting
            return {"ExtraError": f"{type(exc).__name__}: {exc}"}


def _build_document(identity: Mapping[str, Any], host: HostSnapshot, gpu: GPUSnapshot,
                   sequence: int, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The §2.7 document for one host and GPU sample, our additions under ``"Desk"``."""
    disk = host.disk
    document: dict[str, Any] = {
        **identity,
        # An unreadable root has no room: zero free space keeps PYME clients from choosing it.
        "Disk": {"total": disk.total, "used": disk.used, "free": disk.free} if disk
        else {"total": 0, "used": 0, "free": 0},
        "Uptime": str(timedelta(seconds=host.process_uptime)),
        "CPUUsage": list(host.cpu_percent),
        "MemUsage": dict(host.memory),
        "Network": {name: {"send": rate.send, "recv": rate.recv} for name, rate in host.network.items()},
    }
    if gpu.available:
        document["GPUUsage"] = [info.utilization_percent for info in gpu.gpus]
        document["GPUMem"] = [info.memory_percent for info in gpu.gpus]
    document["Desk"] = {
        **extra,
        "Sequence": sequence,
        "SampleTime": host.time,
        "BootTime": host.boot_time,
        "DiskReadable": disk is not None,
        "GPU": {
            "available": gpu.available,
            "state": gpu.state.value,
            "reason": gpu.reason,
            "devices": [asdict(info) for info in gpu.gpus],
        },
    }
    return document


def _identity(given: Mapping[str, Any]) -> dict[str, Any]:
    identity = {**IDENTITY_DEFAULTS, **given}
    if identity["ComputerName"] is None:
        identity["ComputerName"] = computer_name()
    if identity["BindAddress"] is None:
        identity["BindAddress"] = ["", identity["Port"]]
    identity["BindAddress"] = list(identity["BindAddress"])  # a (host, port) tuple is a JSON list
    return identity
