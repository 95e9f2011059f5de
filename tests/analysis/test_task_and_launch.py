"""The localization task and the analysis launch against a real data server and rule server."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import requests

from pyme_desk.analysis import task as localization_task
from pyme_desk.analysis.launch import LocalizationLaunch, results_stub
from pyme_desk.cluster import ClusterClient
from pyme_desk.formats.pzf import encode
from pyme_desk.node.tasks import TaskContext, TaskFailed
from pyme_desk.node.templates import fill_template
from pyme_desk.scheduler.server import RuleServer
from pyme_desk.spool.simulator import SMLMSimulator
from pyme_desk.storage.server import DataServer
from tests.helpers import wait_for

FILTER = "loctest"
SERIES = "user/2026_1_1/cells_00"


@pytest.fixture
def dataserver(tmp_path):
    server = DataServer(tmp_path / "root", server_filter=FILTER, h5r_flush_interval=0.1).start()
    yield server
    server.stop()


@pytest.fixture
def client(dataserver):
    with ClusterClient([dataserver.url], server_filter=FILTER, token="", listing_cache_s=0.0) as c:
        yield c


@pytest.fixture
def ruleserver():
    server = RuleServer(auction_wait=0.05).start()
    yield server
    server.stop()


@pytest.fixture
def context(dataserver):
    ctx = TaskContext(node_name="test", worker_id="test_1", server_filter=FILTER, servers=[dataserver.url])
    yield ctx
    ctx.close()
    localization_task._states.clear()


def _simulator():
    rng = np.random.default_rng(4)
    gx, gy = np.meshgrid(np.arange(700.0, 6000, 1400), np.arange(700.0, 6000, 1400))
    positions = np.c_[gx.ravel(), gy.ravel()] + rng.uniform(-200, 200, (gx.size, 2))
    return SMLMSimulator(64, 64, seed=2, positions_nm=positions, photons=3000, background_photons_per_px=15,
                         on_rate=0.3, off_rate=0.5, bleach_rate=0.0)


def _spool(client, sim, first, last, *, complete):
    if first == 0:
        client.put_file(f"{SERIES}/metadata.json", json.dumps(sim.metadata()).encode())
    for i, frame in zip(range(first, last), sim.frames(last - first)):
        client.put_file(f"{SERIES}/frame{i:05d}.pzf", encode(frame, frame_num=i))
    if complete:
        client.put_file(f"{SERIES}/events.json", json.dumps([["StartAq", "0", 1.0]]).encode())


def _rows(server_url, results):
    r = requests.get(f"{server_url}{results}/FitResults.npy", timeout=10)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


def _task(frame, metadata, fit_results):
    return {"id": f"rule1~{frame}", "type": "localization",
            "taskdef": {"frameIndex": str(frame), "metadata": metadata},
            "inputs": {"frames": f"PYME-CLUSTER://{FILTER}/{SERIES}"},
            "outputs": {"fitResults": fit_results}}


def test_task_localizes_a_frame_and_appends_rows_to_the_h5r(client, context, dataserver):
    sim = _simulator()
    _spool(client, sim, 0, 16, complete=True)
    truth = sim.ground_truth()
    metadata = {**sim.metadata(), "Analysis.FitModule": "LatGaussFitFR", "Analysis.DetectionThreshold": 5}
    client.put_file("user/2026_1_1/analysis/cells_00.h5r.json", json.dumps(metadata).encode())
    target = f"{dataserver.url}__aggregate_h5r/user/2026_1_1/analysis/cells_00.h5r/FitResults"
    for frame in (12, 13):
        localization_task.run(_task(frame, f"PYME-CLUSTER://{FILTER}/user/2026_1_1/analysis/cells_00.h5r.json",
                                    target), context)
    rows = _rows(dataserver.url, "user/2026_1_1/analysis/cells_00.h5r")
    assert set(rows["tIndex"]) == {12, 13}
    for frame in (12, 13):
        got = rows[rows["tIndex"] == frame]
        want = truth[truth["frame"] == frame]
        assert len(got) == len(want) > 0
        d = np.hypot(got["fitResults"]["x0"][:, None] - want["x_nm"], got["fitResults"]["y0"][:, None] - want["y_nm"])
        assert np.all(d.min(axis=1) < 30)
    # inline metadata works too; an unsupported module and a missing frame fail clearly
    localization_task.run(_task(14, metadata, target), context)
    with pytest.raises(TaskFailed, match="fit module 'AstigGaussFitFR' is not supported"):
        localization_task.run(_task(3, {**metadata, "Analysis.FitModule": "AstigGaussFitFR"}, target), context)
    with pytest.raises(TaskFailed, match="frame 99"):
        localization_task.run(_task(99, metadata, target), context)
    with pytest.raises(TaskFailed, match="frameIndex"):
        localization_task.run(_task("x", metadata, target), context)


def test_launch_releases_frames_as_they_arrive_and_finishes(client, context, dataserver, ruleserver):
    sim = _simulator()
    _spool(client, sim, 0, 12, complete=False)
    rs = ruleserver.url.rstrip("/")
    launch = LocalizationLaunch(f"pyme-cluster://{FILTER}/{SERIES}", client, rs, fit="cpu", threshold=5).start()
    try:
        assert launch.results_path == "user/2026_1_1/analysis/cells_00.h5r"
        stored = json.loads(client.get_file(launch.results_path + ".json"))
        assert stored["Analysis.FitModule"] == "LatGaussFitFR" and stored["Camera.ADOffset"] == 100.0
        assert stored["EstimatedLaserOnFrameNo"] == 0
        md = requests.get(f"{dataserver.url}{launch.results_path}/Metadata.json", timeout=5).json()
        assert md["Analysis.DetectionThreshold"] == 5.0 and md["Analysis.FitModule"] == "LatGaussFitFR"
        progress = launch.poll()
        assert progress.frames_released == 12 and not progress.release_complete
        adverts = requests.get(f"{rs}/task_advertisements", timeout=5).json()
        advert = next(a for a in adverts if a["ruleID"] == launch.rule_id)
        assert advert["availableTaskIDs"] == list(range(12))
        _spool(client, sim, 12, 20, complete=True)
        progress = launch.poll()
        assert progress.frames_released == 20 and progress.release_complete and not progress.finished
        # act as a node: win every task, run it, hand it in
        bid = [{"ruleID": launch.rule_id, "taskIDs": list(range(20)), "costs": [0.1] * 20}]
        award = requests.post(f"{rs}/bid_on_tasks", json=bid, timeout=5).json()[0]
        assert sorted(award["taskIDs"]) == list(range(20))
        for task_id in award["taskIDs"]:
            localization_task.run(fill_template(award["template"], launch.rule_id, task_id), context)
        handin = [{"ruleID": launch.rule_id, "taskIDs": award["taskIDs"], "status": [3] * 20}]
        requests.post(f"{rs}/handin", json=handin, timeout=5).raise_for_status()
        progress = launch.poll()
        assert progress.finished and progress.tasks_completed == 20 and progress.tasks_failed == 0
        rows = launch.new_results()
        assert rows is not None and set(rows["tIndex"]) == set(range(20))
        assert launch.new_results() is not None and len(launch.new_results()) == 0
        # a second analysis of the same series gets the next free name
        again = LocalizationLaunch(f"pyme-cluster://{FILTER}/{SERIES}", client, rs, fit="cpu").start()
        assert again.results_path == "user/2026_1_1/analysis/cells_00_1.h5r"
        again.cancel()
        again.close()
    finally:
        launch.close()


def test_a_follower_lists_the_series_at_most_every_list_interval(client, dataserver, ruleserver):
    sim = _simulator()
    _spool(client, sim, 0, 4, complete=False)
    launch = LocalizationLaunch(f"pyme-cluster://{FILTER}/{SERIES}", client, ruleserver.url, fit="cpu",
                                list_interval=3.0).start()
    try:
        assert launch.poll().frames_released == 4
        _spool(client, sim, 4, 8, complete=False)
        assert launch.poll().frames_released == 4  # listed less than list_interval ago
        wait_for(lambda: launch.poll().frames_released == 8, timeout=10, interval=0.2)
    finally:
        launch.cancel()
        launch.close()


def test_results_stub_drops_the_extension():
    assert results_stub("a/b/series.h5") == ("a/b/analysis", "series")
    assert results_stub("series") == ("analysis", "series")


def test_analyse_command_refuses_a_non_cluster_uri():
    proc = subprocess.run([sys.executable, "-m", "pyme_desk", "analyse", "not/a/uri"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a cluster URI" in proc.stderr and "Traceback" not in proc.stderr
