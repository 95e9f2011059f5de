"""The Qt-free model layer against real data servers on 127.0.0.1."""
import importlib.util
import sys
import threading
import time

import pytest

from pyme_desk.config import Config
from pyme_desk.model import formatting as fmt
from pyme_desk.model.desk import Desk
from pyme_desk.model.files import breadcrumbs
from pyme_desk.model.nodes import (HEALTHY, UNREACHABLE, AttachedNodes, NodesModel, normalise_url,
                                   parse_gpu)
from pyme_desk.model.poller import Poller
from pyme_desk.model.preview import LocalizationPreview
from pyme_desk.model.rules import parse_queues
from pyme_desk.model.services import FAILED, READY, STOPPED, InProcessCluster
from pyme_desk.model.settings import Settings, validate
from pyme_desk.storage.server import DataServer


@pytest.fixture
def desk(data_root, tmp_path):
    config = Config(values={"dataserver-root": str(data_root), "dataserver-filter": "modeltest"}, env={})
    services = InProcessCluster.data_server(data_root, server_filter="modeltest")
    d = Desk(config, services=services, discover=False, attached_file=tmp_path / "nodes.json")
    d.start()
    yield d
    d.stop()


def test_model_layer_never_imports_qt():
    import subprocess
    code = ("import sys, pyme_desk.model.desk, pyme_desk.model.settings, pyme_desk.model.preview; "
            "print([m for m in sys.modules if m.startswith(('PyQt5', 'pyqtgraph'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_poller_delivers_values_and_readable_errors():
    results, calls = [], []
    done = threading.Event()

    def read():
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionRefusedError(111, "Connection refused")
        if len(calls) == 3:
            done.set()
        return len(calls)

    poller = Poller(read, results.append, interval=0.01, name="t").start()
    assert done.wait(5)
    poller.stop()
    assert not poller.running
    assert results[0].value == 1 and results[0].error is None
    assert results[1].value is None and results[1].error == "Connection refused"


def test_desk_services_files_and_a_simulated_acquisition(desk):
    got = threading.Event()
    desk.listen("acquisitions", lambda r: r.value and r.value[0].state == "complete" and got.set())
    acquisition = desk.simulate("exp/run1", n_frames=15, frame_rate=500, width=24, height=24)
    assert acquisition.wait(30)
    snap = acquisition.snapshot()
    assert (snap.state, snap.frames_stored, snap.backlog, snap.error) == ("complete", 15, 0, "")
    assert snap.latest_frame.shape == (24, 24)
    assert got.wait(5) and desk.busy() == []
    deadline = time.monotonic() + 5  # listings are cached for up to a second
    while not (rows := desk.files.list("exp")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(r.name, r.kind) for r in rows] == [("run1", "series (complete)")]
    info = desk.files.series_info("exp/run1")
    assert (info.frames, info.complete, info.metadata["Camera.ROIWidth"]) == (15, True, 24)
    assert desk.files.frame("exp/run1", 3).shape == (24, 24)
    (services,) = desk.services.snapshot()
    assert services.state == READY and services.url == desk.local_urls()[0]


def test_file_upload_and_download_report_progress(desk, tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(bytes(range(256)) * 8192)
    progress = []
    desk.files.upload(source, "up", progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (source.stat().st_size,) * 2
    progress.clear()
    out = desk.files.download("up/a.bin", tmp_path / "b.bin", progress=lambda d, t: progress.append((d, t)))
    assert out.read_bytes() == source.read_bytes() and progress[-1] == (source.stat().st_size,) * 2
    assert not list(tmp_path.glob("*.part"))
    stored = desk.config.data_root / "up" / "a.bin"
    assert desk.files.modified("up/a.bin") == pytest.approx(stored.stat().st_mtime, abs=1.0)
    with pytest.raises(Exception, match="no data server|not found"):
        desk.files.modified("up/missing.bin")


def test_in_process_cluster_states_and_a_start_failure(tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    cluster = InProcessCluster.data_server(blocker, server_filter="x")
    with pytest.raises(Exception):
        cluster.start("dataserver")
    (snap,) = cluster.snapshot()
    assert snap.state == FAILED and "data root" in snap.message and snap.log_tail
    good = InProcessCluster.data_server(tmp_path / "root", server_filter="x")
    good.start_all()
    good.restart("dataserver")
    (snap,) = good.snapshot()
    assert (snap.state, snap.restarts) == (READY, 1) and snap.pid is not None
    good.shutdown()
    assert good.snapshot()[0].state == STOPPED


def test_nodes_model_reads_health_and_keeps_a_dead_node_as_unreachable(tmp_path):
    attached = AttachedNodes(tmp_path / "nodes.json")
    model = NodesModel(None, attached, token="")
    with DataServer(tmp_path / "n1", server_filter="x", status_interval=0.1) as server:
        attached.add(server.url)
        snap = model.read().by_url(server.url)
        assert snap.health == HEALTHY and snap.attached and snap.disk_free > 0
        assert 0 <= snap.cpu_percent <= 100 and snap.history["cpu"]
        assert snap.gpu.reason  # available or not, the node says why
    snap = model.read().by_url(server.url)
    assert snap.health == UNREACHABLE and len(snap.history["cpu"]) == 2
    assert AttachedNodes(tmp_path / "nodes.json").urls() == [server.url]  # remembered
    attached.remove(server.url)
    assert model.read().nodes == ()


@pytest.mark.skipif(importlib.util.find_spec("pyme_desk.supervisor") is None, reason="no supervisor")
def test_supervised_cluster_rows(tmp_path):
    from pyme_desk.model.supervised import SupervisedCluster
    from pyme_desk.supervisor import Supervisor

    cluster = SupervisedCluster(Supervisor(tmp_path / "data", workers=1, log_dir=tmp_path / "logs",
                                           state_dir=tmp_path / "state"), ready_timeout=30)
    try:
        assert cluster.start_all()
        rows = {s.name: s for s in cluster.snapshot()}
        assert {"dataserver", "ruleserver", "nodeserver"} <= set(rows)
        assert all(r.state == READY and r.pid and r.url.startswith("http://127.0.0.1:") for r in rows.values())
        cluster.stop("nodeserver")
        assert {s.name: s.state for s in cluster.snapshot()}["nodeserver"] == STOPPED
    finally:
        cluster.shutdown()


def test_node_urls_are_normalised_or_refused():
    assert normalise_url("10.0.0.2:15348") == "http://10.0.0.2:15348/"
    assert normalise_url(" http://host:1/x ") == "http://host:1/"
    for bad in ("", "ftp://host", "http://"):
        with pytest.raises(ValueError):
            normalise_url(bad)


def test_gpu_state_from_a_status_document():
    doc = {"Desk": {"GPU": {"available": True, "reason": "1 NVIDIA GPU", "devices": [
        {"index": 0, "name": "H100", "utilization_percent": 50.0, "memory_used_bytes": 2,
         "memory_total_bytes": 8, "temperature_c": 40.0, "power_w": None,
         "processes": [{"pid": 7, "name": "python", "used_memory_bytes": 2}]}]}}}
    gpu = parse_gpu(doc)
    assert gpu.available and gpu.devices[0].processes == ((7, "python", 2),)
    assert not parse_gpu({}).available and "does not report GPUs" in parse_gpu({}).reason
    assert fmt.gpu_reason("no GPU: NVIDIA driver library (libnvidia-ml) not found") == \
        "no GPU on this node: NVIDIA driver library (libnvidia-ml) not found"


def test_rule_progress_from_the_queue_report():
    (rule,) = parse_queues({"ok": True, "result": {"r1": {"tasksPosted": 10, "tasksRunning": 2,
                                                          "tasksCompleted": 6, "tasksFailed": 1,
                                                          "active": "True", "finished": "False"}}})
    assert (rule.fraction, rule.active, rule.finished) == (0.7, True, False)
    with pytest.raises(ValueError):
        parse_queues({"ok": True})


def test_preview_accumulates_and_measures_rate():
    now = [0.0]
    preview = LocalizationPreview(100, 100, pixel_nm=10, clock=lambda: now[0])
    preview.add([5, 5, 95, 500], [5, 5, 95, 5], photons=[100, 200, 300, 400], precision_nm=[5, 6, 7, 8])
    now[0] = 2.0
    snap = preview.snapshot()
    assert snap.image[0, 0] == 2 and snap.image[9, 9] == 1 and snap.image.sum() == 3  # 500 nm is outside
    assert snap.localizations == 4 and snap.photon_counts.sum() == 4 and snap.per_second == 2.0


def test_preview_display_image_sums_fine_bins_without_fading_lone_localizations():
    preview = LocalizationPreview(10000, 100, pixel_nm=10, display_pixels=512)  # 1000 x 10 fine bins
    preview.add([9995, 5, 15, 25, 35], [95, 5, 5, 15, 15])
    snap = preview.snapshot()
    assert snap.display_factor == 2 and snap.image.shape == (500, 5) and snap.image.sum() == 5
    assert snap.image[499, 4] == 1 and snap.image[0, 0] == 2 and snap.image[1, 0] == 2
    full = snap.full_image()
    assert full.shape == (1000, 10) and full[999, 9] == 1 and full.sum() == 5


def test_preview_snapshots_stay_small_and_are_not_copied_while_nothing_is_added():
    preview = LocalizationPreview(51_200, 51_200, pixel_nm=10)  # 5120 x 5120 fine bins (100 MB)
    preview.add([5.0], [5.0], photons=[100.0], precision_nm=[5.0])
    first = preview.snapshot()
    assert max(first.image.shape) <= 512 and not first.image.flags.writeable
    again = preview.snapshot()  # a poll with no new localizations shares the arrays it gave out
    assert again.image is first.image and again.photon_counts is first.photon_counts
    preview.add([15.0], [5.0])
    later = preview.snapshot()
    assert later.image is not first.image and later.image.sum() == 2 and first.image.sum() == 1


def test_settings_validation(tmp_path):
    good = Settings(str(tmp_path), "lab-1", None, "", 15348, 15346, 15347)
    assert validate(good) == {}
    bad = Settings(str(tmp_path / "f"), "a b", 0, "short", 0, 15346, 15346)
    (tmp_path / "f").write_text("")
    assert set(validate(bad)) == {"data_root", "server_filter", "workers", "token", "dataserver_port",
                                  "nodeserver_port"}


def test_formatting():
    assert (fmt.size(1536), fmt.size(None), fmt.rate(2 * 2**20)) == ("1.5 KiB", "n/a", "2.0 MiB/s")
    assert (fmt.duration(5), fmt.duration(65), fmt.duration(3725)) == ("5s", "1m 05s", "1h 02m")
    assert breadcrumbs("a/b") == [("/", ""), ("a", "a"), ("b", "a/b")]
