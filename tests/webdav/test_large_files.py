"""A 200 MB file through `pyme-desk webdav` (a real subprocess): streamed, never held in memory."""
import hashlib
import io
import json
import subprocess
import sys
import threading
import time

import psutil
import pytest
from webdav4.client import Client

from tests.webdav.conftest import FILTER, PASSWORD, USER

SIZE = 200 * 2**20
RSS_GROWTH_LIMIT = 100 * 2**20


class Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pattern, made on the fly."""

    def __init__(self, size):
        self.left = size
        self.block = bytes(range(256)) * 4096  # 1 MiB

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


class HashSink:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return len(data)


class PeakRSS:
    """Samples a process's resident memory every 20 ms while in use."""

    def __init__(self, pid):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def dav_process(data_servers, users_file, tmp_path):
    port_file = tmp_path / "port.json"
    args = [sys.executable, "-m", "pyme_desk", "webdav", "--port", "0", "--port-file", str(port_file),
            "--users", str(users_file), "--filter", FILTER, "--log-dir", str(tmp_path / "logs")]
    for s in data_servers:
        args += ["--server", s.url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "webdav server did not start"
            time.sleep(0.05)
        yield proc, json.loads(port_file.read_text())["url"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_200_mb_up_and_down_with_bounded_server_memory(dav_process, data_servers):
    proc, url = dav_process
    client = Client(url, auth=(USER, PASSWORD), retry=False, timeout=60)
    client.upload_fileobj(io.BytesIO(b"warm-up"), "warm.txt")  # load the code paths first
    baseline = psutil.Process(proc.pid).memory_info().rss
    with PeakRSS(proc.pid) as upload_rss:
        client.upload_fileobj(Pattern(SIZE), "big.bin", size=SIZE)
    [holder] = [s for s in data_servers if (s.root.path / "big.bin").is_file()]
    assert (holder.root.path / "big.bin").stat().st_size == SIZE
    sink = HashSink()
    with PeakRSS(proc.pid) as download_rss:
        client.download_fileobj("big.bin", sink)
    assert sink.size == SIZE
    with open(holder.root.path / "big.bin", "rb") as f:
        assert sink.sha.hexdigest() == hashlib.file_digest(f, "sha256").hexdigest()
    print(f"RSS growth: upload {(upload_rss.peak - baseline) / 2**20:.1f} MiB, "
          f"download {(download_rss.peak - baseline) / 2**20:.1f} MiB")
    assert upload_rss.peak - baseline < RSS_GROWTH_LIMIT, (upload_rss.peak - baseline) / 2**20
    assert download_rss.peak - baseline < RSS_GROWTH_LIMIT, (download_rss.peak - baseline) / 2**20
