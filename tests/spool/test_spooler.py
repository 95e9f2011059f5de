"""The spooler against real data servers on 127.0.0.1: layout, distribution, failures, back-pressure."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from pyme_desk.cluster import ClusterClient
from pyme_desk.formats import pzf
from pyme_desk.formats.series import open_series
from pyme_desk.spool import SpoolError, Spooler, SpoolQueueFull, frame_name
from pyme_desk.storage.server import DataServer

FILTER = "spooltest"


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(n: int = 1, **options) -> list[DataServer]:
        for i in range(n):
            started.append(DataServer(tmp_path / f"root{len(started)}", server_filter=FILTER, **options).start())
        return started[-n:]

    yield start
    for s in started:
        s.stop(grace=1.0)


def make_frames(n: int, shape=(40, 30), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.poisson(50, shape).astype(np.uint16) + 100 for _ in range(n)]


def spooler(urls, series="user/2024_1_1/series_00", **options) -> Spooler:
    options.setdefault("chunk_size", 50)
    options.setdefault("token", "")
    return Spooler(series, {"Camera.ADOffset": 100, "voxelsize.x": 0.1}, servers=list(urls),
                   server_filter=FILTER, **options)


def client_for(urls) -> ClusterClient:
    return ClusterClient(list(urls), server_filter=FILTER, token="", listing_cache_s=0.0)


def series_files(root: Path, series: str) -> list[str]:
    d = root / series
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_round_trip_through_a_data_server(servers):
    (srv,) = servers(1)
    frames = make_frames(120)
    with spooler([srv.url]) as sp:
        assert sp.uri == f"PYME-CLUSTER://{FILTER}/user/2024_1_1/series_00"
        indices = [sp.put_frame(f, timestamp=1000 + i) for i, f in enumerate(frames)]
        sp.add_event("ProtocolFocus", "12.5")
    assert indices == list(range(120))
    stats = sp.stats()
    assert (stats.frames_queued, stats.frames_sent, stats.queue_depth, stats.errors) == (120, 120, 0, ())
    assert stats.per_server == {srv.url: 120} and stats.bytes_sent > 0

    with client_for([srv.url]) as client:
        series = open_series(sp.uri, client)
        assert series.is_complete and len(series) == 120
        for i in (0, 57, 119):
            np.testing.assert_array_equal(series[i], frames[i])
        np.testing.assert_array_equal(series[10:13], np.stack(frames[10:13]))
        md = series.metadata
        assert md["imageID"] == sp.image_id and md["Camera.ADOffset"] == 100
        assert (md["DimOrder"], md["SizeC"], md["SizeT"], md["SizeZ"]) == ("XYCZT", 1, -1, 1)
        assert "EndTime" in md
        names = [e[0] for e in series.events]
        assert names == ["StartAq", "ProtocolFocus"] and series.events[0][1] == "0"
        header = pzf.read_header(client.get_file("user/2024_1_1/series_00/frame00057.pzf"))
    assert (header.sequence_id, header.frame_num, header.timestamp) == (sp.image_id, 57, 1057)
    raw = json.loads((srv.root.path / "user/2024_1_1/series_00/metadata.json").read_text())
    assert list(raw) == sorted(raw)  # PYME's layout: sorted keys


def test_three_servers_get_frames_in_chunks_of_50(servers):
    cluster = servers(3)
    with spooler([s.url for s in cluster], series="s/chunks") as sp:
        for f in make_frames(260, shape=(8, 8)):
            sp.put_frame(f)
    for k, srv in enumerate(cluster):
        on_disk = {int(n[5:-4]) for n in series_files(srv.root.path, "s/chunks") if n.startswith("frame")}
        expected = {i for i in range(260) if (i // 50) % 3 == k}
        assert on_disk == expected, k
    everywhere = [n for s in cluster for n in series_files(s.root.path, "s/chunks")]
    for name in ("metadata.json", "final_metadata.json", "events.json"):
        assert everywhere.count(name) == 1, name


def test_chunk_size_comes_from_the_config(servers, tmp_path, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("httpspooler-chunksize: 7\n")
    monkeypatch.setenv("PYME_DESK_CONFIG", str(config))
    cluster = servers(2)
    sp = Spooler("s/cfg", {}, servers=[s.url for s in cluster], server_filter=FILTER, token="")
    assert sp.chunk_size == 7
    sp.start()
    for f in make_frames(14, shape=(4, 4)):
        sp.put_frame(f)
    sp.finish()
    assert [n for n in series_files(cluster[1].root.path, "s/cfg") if n.startswith("frame")] == [
        frame_name(i) for i in range(7, 14)]


def test_a_server_killed_mid_series_loses_no_frame(servers):
    cluster = servers(3)
    frames = make_frames(150, shape=(16, 16))
    sp = spooler([s.url for s in cluster], series="s/killed", chunk_size=10, put_timeout=5.0)
    sp.start()
    for f in frames[:45]:
        sp.put_frame(f)
    cluster[1].stop(grace=0.0)  # abruptly, while frames may still be in flight
    for f in frames[45:]:
        sp.put_frame(f)
    report = sp.finish(timeout=30)
    assert report.frames == 150
    stats = sp.stats()
    assert cluster[1].url in stats.servers_dropped
    assert any(cluster[1].url in e for e in stats.errors)
    assert stats.frames_failed == 0
    stored = {}
    for srv in cluster:
        for name in series_files(srv.root.path, "s/killed"):
            stored.setdefault(name, []).append(srv)
    assert {frame_name(i) for i in range(150)} <= set(stored)
    for i, f in enumerate(frames):  # every frame, wherever it went, is intact
        blob = (stored[frame_name(i)][0].root.path / "s/killed" / frame_name(i)).read_bytes()
        np.testing.assert_array_equal(pzf.decode(blob), f)
    # the rest of the series went to the servers that stayed up
    assert all(cluster[1] not in stored[frame_name(i)] for i in range(100, 150))
    assert stored["events.json"][0] is not cluster[1]


def test_events_json_is_written_once_and_last(servers):
    cluster = servers(2)
    sp = spooler([s.url for s in cluster], series="s/events", chunk_size=5)
    sp.start()
    for f in make_frames(30, shape=(8, 8)):
        sp.put_frame(f)
    deadline = time.monotonic() + 10
    while sp.stats().frames_sent < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sp.stats().frames_sent == 30
    assert not any((s.root.path / "s/events/events.json").exists() for s in cluster)
    assert not any((s.root.path / "s/events/final_metadata.json").exists() for s in cluster)
    sp.finish()
    files = [p for s in cluster for p in (s.root.path / "s/events").iterdir()]
    events = [p for p in files if p.name == "events.json"]
    assert len(events) == 1
    last = events[0].stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= last for p in files)
    assert json.loads(events[0].read_text())[0][:2] == ["StartAq", "0"]


def test_hdf_mode_round_trip(servers):
    cluster = servers(2)
    frames = make_frames(30, shape=(12, 10))
    with spooler([s.url for s in cluster], series="s/packed", aggregate_h5=True, chunk_size=4) as sp:
        for f in frames:
            sp.put_frame(f)
        sp.add_event("Marker", "x")
    assert sp.series == "s/packed.h5" and sp.uri.endswith("/s/packed.h5")
    holders = [s for s in cluster if (s.root.path / "s/packed.h5").is_file()]
    assert len(holders) == 1 and not any((s.root.path / "s/packed").exists() for s in cluster)
    with client_for([s.url for s in cluster]) as client:
        series = open_series(sp.uri, client)
        assert series.is_complete and len(series) == 30
        np.testing.assert_array_equal(series[29], frames[29])
        assert series.metadata["imageID"] == sp.image_id
        assert [e[0] for e in series.events] == ["StartAq", "Marker"]


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pausing a process needs SIGSTOP (POSIX)")
def test_back_pressure_holds_the_camera_back_and_drops_nothing(tmp_path):
    port_file = tmp_path / "port.json"
    proc = subprocess.Popen([sys.executable, "-m", "pyme_desk", "dataserver", "--root", str(tmp_path / "root"),
                             "--port", "0", "--port-file", str(port_file), "--advertise", "none",
                             "--log-dir", str(tmp_path / "logs")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while not port_file.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        url = json.loads(port_file.read_text())["url"]
        sp = spooler([url], series="s/stalled", max_queue=4)
        sp.start()
        os.kill(proc.pid, signal.SIGSTOP)  # the server stops reading: nothing gets confirmed
        try:
            stopped = psutil.Process(proc.pid)
            deadline = time.monotonic() + 10
            while stopped.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
                time.sleep(0.01)
            frames = make_frames(4, shape=(64, 64))
            for f in frames:
                sp.put_frame(f, block=False)
            with pytest.raises(SpoolQueueFull):
                sp.put_frame(frames[0], block=False)
            started = time.monotonic()
            with pytest.raises(SpoolQueueFull):
                sp.put_frame(frames[0], timeout=0.3)
            assert time.monotonic() - started >= 0.3
            assert sp.stats().queue_depth == 4 and sp.stats().frames_queued == 4
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        report = sp.finish(timeout=20)
        assert report.frames == 4 and report.errors == ()
        assert [n for n in series_files(tmp_path / "root", "s/stalled") if n.startswith("frame")] == [
            frame_name(i) for i in range(4)]
    finally:
        proc.terminate()
        proc.wait(10)


def test_frames_no_server_would_store_fail_finish_loudly(servers):
    (srv,) = servers(1)
    sp = spooler([srv.url], series="s/doomed", put_timeout=2.0)
    sp.start()
    srv.stop(grace=0.0)
    for f in make_frames(3, shape=(4, 4)):
        sp.put_frame(f)
    with pytest.raises(SpoolError) as info:
        sp.finish(timeout=10)
    assert len(info.value.failures) == 3 and "frame00000.pzf" in info.value.failures[0]
    assert not (srv.root.path / "s/doomed/events.json").exists()
    assert sp.stats().frames_failed == 3


def test_token_is_sent_as_bearer(servers):
    (srv,) = servers(1, token="s3cret")
    with spooler([srv.url], series="s/auth", token="s3cret") as sp:
        sp.put_frame(make_frames(1)[0])
    assert (srv.root.path / "s/auth/events.json").is_file()
    with pytest.raises(SpoolError, match="token"):
        spooler([srv.url], series="s/auth2", token="wrong").start()


def test_an_existing_series_is_refused(servers):
    (srv,) = servers(1)
    with spooler([srv.url], series="s/again") as sp:
        sp.put_frame(make_frames(1)[0])
    with pytest.raises(SpoolError, match="already exists"):
        spooler([srv.url], series="s/again").start()


def test_misuse_is_refused_clearly(servers):
    (srv,) = servers(1)
    sp = spooler([srv.url], series="s/misuse")
    with pytest.raises(SpoolError):
        sp.put_frame(make_frames(1)[0])  # not started
    sp.start()
    with pytest.raises(ValueError, match="uint8, uint16 or float32"):
        sp.put_frame(np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match="2-D"):
        sp.put_frame(np.zeros(4, np.uint16))
    sp.finish()
    with pytest.raises(SpoolError):
        sp.put_frame(make_frames(1)[0])
    with pytest.raises(ValueError):
        Spooler("s/x", {}, servers=[srv.url], server_filter=FILTER, token="", compression="raw",
                quantization="sqrt")


def test_abort_on_exception_leaves_the_series_incomplete(servers):
    (srv,) = servers(1)
    with pytest.raises(RuntimeError):
        with spooler([srv.url], series="s/aborted") as sp:
            sp.put_frame(make_frames(1)[0])
            raise RuntimeError("camera fell over")
    assert (srv.root.path / "s/aborted/metadata.json").is_file()
    assert not (srv.root.path / "s/aborted/events.json").exists()


def test_frame_names_grow_past_five_digits():
    assert frame_name(0) == "frame00000.pzf"
    assert frame_name(99999) == "frame99999.pzf"
    assert frame_name(100000) == "frame100000.pzf"


def test_spool_benchmark_runs_end_to_end(tmp_path):
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "spool.py"
    out = subprocess.run([sys.executable, str(script), "--seconds", "0.2", "--size", "256", "--tmp", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    report = json.loads(line)
    assert report["raw"]["frames"] > 0 and report["huffcode"]["ratio"] > 1
    assert report["plain_write"]["MBps"] > 0 and isinstance(report["pass"], bool)
    assert list(tmp_path.iterdir()) == []  # data root and plain-write files removed
