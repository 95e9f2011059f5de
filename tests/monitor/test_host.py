"""Host snapshots against this machine's real counters."""
from __future__ import annotations

import socket
import threading
import time

import psutil
import pytest

from pyme_desk.monitor.host import BASELINE_WINDOW_S, DiskUsage, host_snapshot


def test_first_snapshot_is_plausible(tmp_path):
    snap = host_snapshot(tmp_path)

    assert isinstance(snap.disk, DiskUsage)
    assert snap.disk.total > 0
    assert 0 <= snap.disk.free <= snap.disk.total
    assert 0 <= snap.disk.used <= snap.disk.total
    assert len(snap.cpu_percent) == psutil.cpu_count()
    assert all(0.0 <= p <= 100.0 for p in snap.cpu_percent)
    assert {"total", "available", "percent", "used", "free"} <= snap.memory.keys()
    assert snap.memory["total"] > 0
    assert snap.network, "every machine has at least a loopback interface"
    assert all(rate.send >= 0 and rate.recv >= 0 for rate in snap.network.values())
    assert snap.boot_time < snap.time <= time.time()
    assert 0 <= snap.process_uptime < snap.time - snap.boot_time + 1


def test_snapshot_after_a_previous_one_does_not_wait(tmp_path):
    prev = host_snapshot(tmp_path)
    started = time.perf_counter()
    snap = host_snapshot(tmp_path, prev)
    assert time.perf_counter() - started < BASELINE_WINDOW_S
    assert snap.time >= prev.time
    assert len(snap.cpu_percent) == len(prev.cpu_percent)


def test_cpu_percent_sees_a_busy_loop(tmp_path):
    prev = host_snapshot(tmp_path)
    end = time.perf_counter() + 0.4
    while time.perf_counter() < end:
        pass
    snap = host_snapshot(tmp_path, prev)
    # One thread spun for the whole window; wherever the scheduler put it, the cores add up.
    assert sum(snap.cpu_percent) >= 50.0


def _loopback_name() -> str | None:
    names = psutil.net_io_counters(pernic=True)
    return next((name for name in ("lo", "lo0") if name in names), None)


@pytest.mark.skipif(_loopback_name() is None, reason="no loopback interface counters on this OS")
def test_network_rate_counts_loopback_traffic(tmp_path):
    payload = b"x" * (8 * 1024 * 1024)
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def drain() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    started = time.monotonic()
    prev = host_snapshot(tmp_path)
    with socket.create_connection(server.getsockname(), timeout=5) as client:
        client.sendall(payload)
    reader.join(5)
    server.close()
    snap = host_snapshot(tmp_path, prev)
    window = time.monotonic() - started

    assert len(received) == len(payload)
    rate = snap.network[_loopback_name()]
    assert rate.recv >= len(payload) / window
    assert rate.send >= len(payload) / window


def test_unreadable_root_gives_no_disk_instead_of_an_error(tmp_path):
    snap = host_snapshot(tmp_path / "missing")
    assert snap.disk is None
    assert snap.memory["total"] > 0
