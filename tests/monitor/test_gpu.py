"""GPU snapshots: the real NVML on this machine, and a fake binding for the refusals.

The fake stands in for the third-party ``pynvml`` module only (never for our own code): it
raises pynvml's real exception classes so the session meets the same errors a driver gives.
"""
from __future__ import annotations

import os
import threading
import warnings
from types import SimpleNamespace

import pynvml
import pytest

from pyme_desk.monitor.gpu import GPUProcess, GPUState, NVMLSession, gpu_snapshot


def _nvml_device_count() -> int:
    """How many devices the real NVML sees here (0 without a driver)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


HAS_GPU = _nvml_device_count() > 0


def _nvml_library_missing() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return True
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return False


# -- the real NVML -----------------------------------------------------------------------------

@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_the_snapshot_says_why():
    snap = gpu_snapshot()
    assert snap.available is False
    assert snap.state is not GPUState.AVAILABLE
    assert snap.reason.strip()
    assert snap.gpus == ()


@pytest.mark.skipif(not _nvml_library_missing(), reason="the NVML library is present here")
def test_missing_driver_library_is_named():
    snap = gpu_snapshot()
    assert snap.state is GPUState.NO_DRIVER
    assert "not found" in snap.reason
    assert "libnvidia-ml" in snap.reason or "nvml.dll" in snap.reason


@pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU visible to NVML")
def test_with_a_gpu_the_fields_are_filled():
    snap = gpu_snapshot()
    assert snap.available is True
    assert snap.state is GPUState.AVAILABLE
    assert len(snap.gpus) == _nvml_device_count()
    for index, info in enumerate(snap.gpus):
        assert info.index == index
        assert info.name
        assert info.uuid and info.uuid.startswith(("GPU-", "MIG-"))
        assert info.memory_total_bytes > 0
        assert 0 <= info.memory_used_bytes <= info.memory_total_bytes
        assert 0.0 <= info.memory_percent <= 100.0
        assert 0.0 <= info.utilization_percent <= 100.0
        assert 0.0 < info.temperature_c < 120.0
        assert 0.0 < info.power_w
        assert 0.0 < info.power_limit_w
        assert isinstance(info.processes, tuple)


def test_gpu_snapshot_is_stable_across_calls():
    first, second = gpu_snapshot(), gpu_snapshot()
    assert first.state == second.state
    assert len(first.gpus) == len(second.gpus)


# -- a fake binding for what this machine cannot show ----------------------------------------

class FakeNVML:
    """The few pynvml names the session uses; ``refuse`` lists queries that say NotSupported."""

    NVMLError = pynvml.NVMLError
    NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU

    def __init__(self, count=1, init_error=None, refuse=(), compute=(), graphics=()):
        self.count = count
        self.init_error = init_error
        self.refuse = set(refuse)
        self.compute = list(compute)
        self.graphics = list(graphics)
        self.inits = 0
        self.shutdowns = 0

    def _answer(self, query, value):
        if query in self.refuse:
            raise pynvml.NVMLError_NotSupported()
        return value

    def nvmlInit(self):
        self.inits += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return self._answer("count", self.count)

    def nvmlDeviceGetHandleByIndex(self, index):
        return self._answer("handle", f"handle-{index}")

    def nvmlDeviceGetName(self, handle):
        return self._answer("name", "Fake GPU")

    def nvmlDeviceGetUUID(self, handle):
        return self._answer("uuid", f"GPU-{handle}")

    def nvmlDeviceGetUtilizationRates(self, handle):
        return self._answer("utilization", SimpleNamespace(gpu=37, memory=5))

    def nvmlDeviceGetMemoryInfo(self, handle):
        return self._answer("memory", SimpleNamespace(used=1 << 30, total=4 << 30, free=3 << 30))

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._answer("temperature", 55)

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._answer("power", 72_500)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._answer("power_limit", 300_000)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._answer("compute", self.compute)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return self._answer("graphics", self.graphics)


def _session(fake: FakeNVML) -> NVMLSession:
    return NVMLSession(load=lambda: fake)


def test_fake_device_values_are_converted_to_our_units():
    snap = _session(FakeNVML(count=2)).snapshot()
    assert snap.available and snap.state is GPUState.AVAILABLE
    assert snap.reason == "2 NVIDIA GPUs"
    first = snap.gpus[0]
    assert (first.index, first.name, first.uuid) == (0, "Fake GPU", "GPU-handle-0")
    assert first.utilization_percent == 37.0
    assert (first.memory_used_bytes, first.memory_total_bytes, first.memory_percent) == (1 << 30, 4 << 30, 25.0)
    assert (first.temperature_c, first.power_w, first.power_limit_w) == (55.0, 72.5, 300.0)
    assert first.processes == ()
    assert snap.gpus[1].index == 1


def test_unsupported_queries_become_none_and_the_rest_is_kept():
    refused = {"utilization", "temperature", "power", "power_limit", "compute", "graphics"}
    snap = _session(FakeNVML(refuse=refused)).snapshot()
    info = snap.gpus[0]
    assert snap.available
    assert info.utilization_percent is None
    assert info.temperature_c is None
    assert info.power_w is None and info.power_limit_w is None
    assert info.processes is None
    assert info.name == "Fake GPU" and info.memory_percent == 25.0


def test_a_device_without_a_handle_is_listed_with_only_its_index():
    snap = _session(FakeNVML(refuse={"handle"})).snapshot()
    assert snap.available
    assert snap.gpus[0].index == 0
    assert snap.gpus[0].name is None and snap.gpus[0].memory_total_bytes is None


def test_processes_are_merged_by_pid_and_named_from_this_machine():
    me = os.getpid()
    fake = FakeNVML(compute=[SimpleNamespace(pid=me, usedGpuMemory=None)],
                    graphics=[SimpleNamespace(pid=me, usedGpuMemory=2048),
                              SimpleNamespace(pid=2 ** 22 + 1, usedGpuMemory=None)])
    processes = _session(fake).snapshot().gpus[0].processes
    assert processes[0] == GPUProcess(pid=me, name=processes[0].name, used_memory_bytes=2048)
    assert processes[0].name  # this test process exists, so it has a name
    assert processes[1] == GPUProcess(pid=2 ** 22 + 1, name=None, used_memory_bytes=None)


@pytest.mark.parametrize("load_error, init_error, state, words", [
    (ImportError("No module named 'pynvml'"), None, GPUState.NO_PYNVML, "nvidia-ml-py"),
    (None, pynvml.NVMLError_LibraryNotFound(), GPUState.NO_DRIVER, "not found"),
    (None, pynvml.NVMLError_DriverNotLoaded(), GPUState.NO_DRIVER, "not loaded"),
    (None, pynvml.NVMLError_NoPermission(), GPUState.ERROR, "Insufficient Permissions"),
])
def test_each_failure_has_its_state_and_reason(load_error, init_error, state, words):
    fake = FakeNVML(init_error=init_error)

    def load():
        if load_error is not None:
            raise load_error
        return fake

    snap = NVMLSession(load=load).snapshot()
    assert (snap.available, snap.state, snap.gpus) == (False, state, ())
    assert words in snap.reason


def test_no_devices_is_its_own_state():
    snap = _session(FakeNVML(count=0)).snapshot()
    assert (snap.available, snap.state) == (False, GPUState.NO_DEVICES)
    assert "no devices" in snap.reason


def test_a_broken_binding_is_reported_not_raised():
    fake = FakeNVML()
    fake.nvmlDeviceGetCount = lambda: 1 / 0
    snap = _session(fake).snapshot()
    assert (snap.available, snap.state) == (False, GPUState.ERROR)
    assert "division by zero" in snap.reason


def test_nvml_is_initialised_once_across_threads_and_a_failure_is_remembered():
    fake = FakeNVML()
    session = _session(fake)
    barrier = threading.Barrier(8)

    def hammer():
        barrier.wait()
        for _ in range(20):
            assert session.snapshot().available

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert fake.inits == 1

    failing = FakeNVML(init_error=pynvml.NVMLError_LibraryNotFound())
    failed_session = _session(failing)
    for _ in range(3):
        assert failed_session.snapshot().state is GPUState.NO_DRIVER
    assert failing.inits == 1


def test_shutdown_ends_nvml_and_a_later_snapshot_starts_it_again():
    fake = FakeNVML()
    session = _session(fake)
    session.snapshot()
    session.shutdown()
    assert fake.shutdowns == 1
    session.shutdown()  # nothing left to shut down
    assert fake.shutdowns == 1
    assert session.snapshot().available
    assert fake.inits == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_starts_its_own_nvml_and_leaves_the_parents_alone():
    fake = FakeNVML()
    session = _session(fake)
    session.snapshot()
    with warnings.catch_warnings():  # 3.12+ warns when other tests' threads are alive; the child only runs our code
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own initialisation, its own shutdown
        ok = session.snapshot().available and fake.inits == 2
        session.shutdown()
        os._exit(0 if ok and fake.shutdowns == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert session.snapshot().available
    assert (fake.inits, fake.shutdowns) == (1, 0)
