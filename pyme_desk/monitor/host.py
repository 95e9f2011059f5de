"""Host metrics: CPU per core, memory, disk of the data root, network rates, uptimes.

Rates (CPU busy %, network bytes/s) are differences between two readings of the kernel's
counters.  :func:`host_snapshot` takes the previous snapshot and measures against it, so a
sampler that keeps its last snapshot gets rates over its own interval and never depends on
psutil's hidden per-thread state.  Without a previous snapshot it takes a baseline reading and
waits :data:`BASELINE_WINDOW_S` first, so even the first snapshot holds real rates.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil

#: How long a snapshot without a predecessor measures CPU and network (psutil's advised minimum).
BASELINE_WINDOW_S = 0.1


@dataclass(frozen=True)
class DiskUsage:
    """Bytes on the file system holding the data root."""

    total: int
    used: int
    free: int


@dataclass(frozen=True)
class NetworkRate:
    """Bytes per second through one interface."""

    send: float
    recv: float


class _Counters(NamedTuple):
    """Raw cumulative kernel counters and when they were read."""

    monotonic: float
    cpu_times: list[Any]  # psutil scputimes, one per logical CPU
    net: dict[str, Any]  # psutil snetio per interface


@dataclass(frozen=True)
class HostSnapshot:
    """The host at one moment.  ``disk`` is ``None`` when the root cannot be read."""

    time: float  # wall clock (seconds since the epoch) at the end of the reading
    cpu_percent: tuple[float, ...]  # busy % per logical CPU since the previous snapshot
    memory: dict[str, int | float]  # psutil.virtual_memory() fields by name
    disk: DiskUsage | None
    network: dict[str, NetworkRate]  # per interface, since the previous snapshot
    process_uptime: float  # seconds since this process started
    boot_time: float  # seconds since the epoch
    _counters: _Counters = field(repr=False, compare=False)


def host_snapshot(root: Path, prev: HostSnapshot | None = None) -> HostSnapshot:
    """Read the host now; CPU and network rates are measured since ``prev``.

    Without ``prev`` this blocks for :data:`BASELINE_WINDOW_S` to get a first measurement.
    """
    if prev is None:
        before = _read_counters()
        time.sleep(BASELINE_WINDOW_S)
    else:
        before = prev._counters
    now = _read_counters()
    elapsed = now.monotonic - before.monotonic
    return HostSnapshot(
        time=time.time(),
        cpu_percent=tuple(_busy_percent(t0, t1) for t0, t1 in zip(before.cpu_times, now.cpu_times)),
        memory=psutil.virtual_memory()._asdict(),
        disk=_disk_usage(root),
        network={name: _rate(before.net[name], counters, elapsed)
                 for name, counters in now.net.items() if name in before.net},
        process_uptime=max(time.time() - psutil.Process().create_time(), 0.0),
        boot_time=psutil.boot_time(),
        _counters=now,
    )


def _read_counters() -> _Counters:
    return _Counters(monotonic=time.monotonic(),
                     cpu_times=psutil.cpu_times(percpu=True),
                     net=psutil.net_io_counters(pernic=True))


def _busy_percent(before: Any, after: Any) -> float:
    """Share of the time between two ``scputimes`` that one CPU was not idle, in percent.

    Linux counts guest time inside user/nice as well, so it is left out of the total; waiting
    for I/O counts as idle.  Fields are the platform's own (Linux, Windows, macOS differ).
    """
    delta = {name: max(getattr(after, name) - getattr(before, name), 0.0) for name in after._fields}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
    if total <= 0:
        return 0.0
    return round(min(max(100.0 * (total - idle) / total, 0.0), 100.0), 1)


def _rate(before: Any, after: Any, elapsed: float) -> NetworkRate:
    """Bytes per second from two ``snetio`` readings; a counter that went back (reset) reads 0."""
    if elapsed <= 0:
        return NetworkRate(send=0.0, recv=0.0)
    return NetworkRate(send=max(after.bytes_sent - before.bytes_sent, 0) / elapsed,
                       recv=max(after.bytes_recv - before.bytes_recv, 0) / elapsed)


def _disk_usage(root: Path) -> DiskUsage | None:
    try:
        usage = shutil.disk_usage(root)
    except OSError:
        return None
    return DiskUsage(total=usage.total, used=usage.used, free=usage.free)
