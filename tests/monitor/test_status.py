"""The background ``/__status`` sampler (protocol.md §2.7)."""
from __future__ import annotations

import json
import re
import threading
import time

import psutil
import pytest

from pyme_desk.monitor.gpu import gpu_snapshot
from pyme_desk.monitor.status import StatusSampler

IDENTITY = {"IPAddress": "127.0.0.1", "BindAddress": ("", 15348), "Port": 15348,
            "Protocol": "1.1", "TestMode": False, "ComputerName": "node1"}


@pytest.fixture
def make_sampler():
    """Build samplers that are always stopped at the end of the test."""
    made: list[StatusSampler] = []

    def make(root, **kwargs):
        kwargs.setdefault("identity", IDENTITY)
        sampler = StatusSampler(root, **kwargs)
        made.append(sampler)
        return sampler

    yield make
    for sampler in made:
        sampler.stop()


def _wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_document_has_every_status_key_with_its_type(data_root, make_sampler):
    sampler = make_sampler(data_root)
    sampler.start()
    doc = sampler.document()

    assert {k: doc[k] for k in IDENTITY} == {**IDENTITY, "BindAddress": ["", 15348]}
    assert set(doc["Disk"]) == {"total", "used", "free"}
    assert all(isinstance(v, int) for v in doc["Disk"].values()) and doc["Disk"]["total"] > 0
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d{6})?", doc["Uptime"]), doc["Uptime"]
    assert isinstance(doc["CPUUsage"], list) and len(doc["CPUUsage"]) == psutil.cpu_count()
    assert all(isinstance(p, float) and 0 <= p <= 100 for p in doc["CPUUsage"])
    assert {"total", "available", "percent", "used", "free"} <= doc["MemUsage"].keys()
    assert doc["Network"] and all(
        set(rates) == {"send", "recv"} and all(isinstance(v, float) and v >= 0 for v in rates.values())
        for rates in doc["Network"].values())

    gpu = gpu_snapshot()
    assert doc["Desk"]["GPU"]["available"] is gpu.available
    assert doc["Desk"]["GPU"]["state"] == gpu.state.value
    assert doc["Desk"]["GPU"]["reason"] == gpu.reason
    if gpu.available:
        assert len(doc["GPUUsage"]) == len(doc["GPUMem"]) == len(gpu.gpus)
        assert all(isinstance(v, float) for v in doc["GPUUsage"] + doc["GPUMem"])
        assert len(doc["Desk"]["GPU"]["devices"]) == len(gpu.gpus)
    else:
        assert "GPUUsage" not in doc and "GPUMem" not in doc
        assert doc["Desk"]["GPU"]["devices"] == []


def test_document_bytes_are_the_document_as_json(data_root, make_sampler):
    sampler = make_sampler(data_root)
    sampler.start()
    assert json.loads(sampler.document_bytes()) == json.loads(json.dumps(sampler.document()))


def test_identity_defaults_and_unknown_keys(data_root):
    with pytest.raises(ValueError, match="Hostname"):
        StatusSampler(data_root, identity={"Hostname": "x"})
    with pytest.raises(ValueError, match="interval"):
        StatusSampler(data_root, interval=0)

    sampler = StatusSampler(data_root, identity={"Port": 4242})
    sampler.start()
    try:
        doc = sampler.document()
        assert doc["Port"] == 4242 and doc["BindAddress"] == ["", 4242]
        assert isinstance(doc["ComputerName"], str) and doc["ComputerName"]
        assert doc["TestMode"] is False and doc["Protocol"] == "1.1"
    finally:
        sampler.stop()


def test_document_answers_in_well_under_a_millisecond(data_root, make_sampler):
    sampler = make_sampler(data_root, interval=0.01)  # sampling busily in the background
    sampler.start()
    started = time.perf_counter()
    for _ in range(1000):
        sampler.document()
        sampler.document_bytes()
    per_call = (time.perf_counter() - started) / 1000
    assert per_call < 1e-3


def test_document_is_refreshed_every_interval(data_root, make_sampler):
    sampler = make_sampler(data_root, interval=0.05)
    sampler.start()
    first = sampler.document()
    assert first["Desk"]["Sequence"] == 1
    assert _wait_for(lambda: sampler.document()["Desk"]["Sequence"] >= 3)
    later = sampler.document()
    assert later["Desk"]["SampleTime"] > first["Desk"]["SampleTime"]
    assert json.loads(sampler.document_bytes())["Desk"]["Sequence"] >= 3


def test_stop_returns_at_once_even_with_a_long_interval(data_root):
    sampler = StatusSampler(data_root, interval=60.0, identity=IDENTITY)
    sampler.start()
    started = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - started < 1.0
    assert not any(t.name == "pyme-desk-status-sampler" and t.is_alive() for t in threading.enumerate())
    assert sampler.document()["Desk"]["Sequence"] == 1  # the last document stays readable


def test_document_before_start_is_an_error(data_root):
    with pytest.raises(RuntimeError, match="start"):
        StatusSampler(data_root).document()


def test_extra_keys_go_under_desk_and_a_failing_hook_does_not_stop_sampling(data_root, make_sampler):
    calls = []

    def extra():
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk gone")
        return {"Requests": 7, "Sequence": -1}

    sampler = make_sampler(data_root, interval=0.05, extra=extra)
    sampler.start()
    desk = sampler.document()["Desk"]
    assert desk["Requests"] == 7
    assert desk["Sequence"] == 1  # our keys win over the hook's
    assert _wait_for(lambda: "ExtraError" in sampler.document()["Desk"])
    assert sampler.document()["Desk"]["ExtraError"] == "OSError: disk gone"
    seq = sampler.document()["Desk"]["Sequence"]
    assert _wait_for(lambda: sampler.document()["Desk"]["Sequence"] > seq)


def test_missing_root_reports_no_room_instead_of_failing(tmp_path, make_sampler):
    sampler = make_sampler(tmp_path / "gone")
    sampler.start()
    doc = sampler.document()
    assert doc["Disk"] == {"total": 0, "used": 0, "free": 0}
    assert doc["Desk"]["DiskReadable"] is False
