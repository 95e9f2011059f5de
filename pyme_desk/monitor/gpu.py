"""NVIDIA GPU metrics through NVML, with an explicit reason whenever there are none.

:func:`gpu_snapshot` never raises.  A machine without the ``nvidia-ml-py`` package, without
the driver library, or without devices gets a :class:`GPUSnapshot` whose ``state`` says which
and whose ``reason`` says it in words a user can act on.  A single value that NVML cannot give
for one device (power draw on a consumer card, utilisation under MIG, ...) is ``None`` in that
device's :class:`GPUInfo`; the rest of the snapshot is still filled.

NVML is initialised on first use, once per process (again after a fork), under a lock, and
shut down when the interpreter exits.
"""
from __future__ import annotations

import atexit
import enum
import os
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, TypeVar

import psutil

_T = TypeVar("_T")


class GPUState(str, enum.Enum):
    """Why there is (or is not) GPU data."""

    AVAILABLE = "available"
    NO_PYNVML = "no-pynvml"  # the nvidia-ml-py package cannot be imported
    NO_DRIVER = "no-driver"  # the NVML library is missing or the driver is not loaded
    NO_DEVICES = "no-devices"  # NVML works but sees no GPU
    ERROR = "error"  # NVML failed in some other way; the reason carries its message


@dataclass(frozen=True)
class GPUProcess:
    """One process holding memory on a GPU."""

    pid: int
    name: str | None
    used_memory_bytes: int | None


@dataclass(frozen=True)
class GPUInfo:
    """One device at one moment; ``None`` marks a value NVML could not give."""

    index: int
    name: str | None = None
    uuid: str | None = None
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: tuple[GPUProcess, ...] | None = None


@dataclass(frozen=True)
class GPUSnapshot:
    """All devices at one moment, or the reason there are none."""

    available: bool
    state: GPUState
    reason: str
    gpus: tuple[GPUInfo, ...] = ()


def _nvml_library_name() -> str:
    return "nvml.dll" if sys.platform == "win32" else "libnvidia-ml"


def _import_pynvml() -> ModuleType:
    import pynvml

    return pynvml


class NVMLSession:
    """Owns this process's NVML initialisation and reads snapshots through it.

    ``load`` returns the ``pynvml`` module (or an object with the same names); it is called
    at most once per process.  Everything is serialised by one lock, so any thread may call
    :meth:`snapshot`.
    """

    def __init__(self, load: Callable[[], Any] = _import_pynvml) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process that initialised (or tried to)
        self._nvml: Any = None  # the module, once nvmlInit succeeded
        self._failure: GPUSnapshot | None = None  # why initialisation failed, once it did

    def snapshot(self) -> GPUSnapshot:
        """Read every device now; never raises."""
        with self._lock:
            try:
                failure = self._ensure_initialised()
                if failure is not None:
                    return failure
                return self._read_devices(self._nvml)
            except Exception as exc:  # an NVML binding can fail in ways we cannot list
                return _unavailable(GPUState.ERROR, f"GPU data unavailable: {exc}")

    def shutdown(self) -> None:
        """Shut NVML down if this process initialised it; the next snapshot initialises again."""
        with self._lock:
            if self._nvml is not None and self._pid == os.getpid():
                try:
                    self._nvml.nvmlShutdown()
                except Exception:  # shutting down at exit must never fail the exit
                    pass
            self._pid, self._nvml, self._failure = None, None, None

    def _ensure_initialised(self) -> GPUSnapshot | None:
        """Initialise NVML once per process; return the cached failure snapshot if it failed."""
        if self._pid != os.getpid():
            # First use, or a forked child: the parent's NVML state is not ours to use or shut down.
            self._nvml = None
            self._failure = self._initialise()
            self._pid = os.getpid()
        return self._failure

    def _initialise(self) -> GPUSnapshot | None:
        """Load the binding and start NVML; the failure snapshot, or ``None`` on success."""
        try:
            nvml = self._load()
        except ImportError:
            return _unavailable(GPUState.NO_PYNVML,
                                "no GPU data: the nvidia-ml-py package (pynvml) is not installed")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError_LibraryNotFound:
            return _unavailable(GPUState.NO_DRIVER,
                                f"no GPU: NVIDIA driver library ({_nvml_library_name()}) not found")
        except nvml.NVMLError_DriverNotLoaded:
            return _unavailable(GPUState.NO_DRIVER,
                                "no GPU: the NVIDIA driver is installed but not loaded")
        except Exception as exc:  # NVMLError or a broken binding: either way, no GPU data
            return _unavailable(GPUState.ERROR, f"no GPU data: NVML failed to start: {exc}")
        self._nvml = nvml
        return None

    def _read_devices(self, nvml: Any) -> GPUSnapshot:
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            return _unavailable(GPUState.ERROR, f"GPU data unavailable: NVML cannot count devices: {exc}")
        if count == 0:
            return _unavailable(GPUState.NO_DEVICES, "no GPU: the NVIDIA driver reports no devices")
        gpus = tuple(_DeviceReader(nvml).read(index) for index in range(count))
        return GPUSnapshot(available=True, state=GPUState.AVAILABLE,
                           reason=f"{count} NVIDIA GPU{'s' if count > 1 else ''}", gpus=gpus)


class _DeviceReader:
    """Reads one device's fields, turning each NVML refusal into ``None``."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def _get(self, query: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return query(*args)
        except self._nvml.NVMLError:
            return None

    def read(self, index: int) -> GPUInfo:
        nvml = self._nvml
        handle = self._get(nvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return GPUInfo(index=index)
        memory = self._get(nvml.nvmlDeviceGetMemoryInfo, handle)
        used = total = percent = None
        if memory is not None:
            used, total = int(memory.used), int(memory.total)
            percent = 100.0 * used / total if total else None
        utilization = self._get(nvml.nvmlDeviceGetUtilizationRates, handle)
        return GPUInfo(
            index=index,
            name=self._get(nvml.nvmlDeviceGetName, handle),
            uuid=self._get(nvml.nvmlDeviceGetUUID, handle),
            utilization_percent=None if utilization is None else float(utilization.gpu),
            memory_used_bytes=used,
            memory_total_bytes=total,
            memory_percent=percent,
            temperature_c=_as_float(self._get(nvml.nvmlDeviceGetTemperature, handle,
                                              nvml.NVML_TEMPERATURE_GPU)),
            power_w=_milli(self._get(nvml.nvmlDeviceGetPowerUsage, handle)),
            power_limit_w=_milli(self._get(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)),
            processes=self._processes(handle),
        )

    def _processes(self, handle: Any) -> tuple[GPUProcess, ...] | None:
        """Compute and graphics processes, one entry per pid; ``None`` if NVML lists neither."""
        compute = self._get(self._nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        graphics = self._get(self._nvml.nvmlDeviceGetGraphicsRunningProcesses, handle)
        if compute is None and graphics is None:
            return None
        memory_by_pid: dict[int, int | None] = {}
        for proc in [*(compute or ()), *(graphics or ())]:
            used = getattr(proc, "usedGpuMemory", None)  # None where the OS hides it (WDDM)
            if memory_by_pid.get(proc.pid) is None:
                memory_by_pid[proc.pid] = None if used is None else int(used)
        return tuple(GPUProcess(pid=pid, name=_process_name(pid), used_memory_bytes=used)
                     for pid, used in memory_by_pid.items())


def _unavailable(state: GPUState, reason: str) -> GPUSnapshot:
    return GPUSnapshot(available=False, state=state, reason=reason)


def _as_float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _milli(value: float | int | None) -> float | None:
    """NVML reports power in milliwatts; we report watts."""
    return None if value is None else value / 1000.0


def _process_name(pid: int) -> str | None:
    """The process's name as this machine sees it (``None`` if gone, hidden or in another namespace)."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None


_SESSION = NVMLSession()
atexit.register(_SESSION.shutdown)


def gpu_snapshot() -> GPUSnapshot:
    """Every NVIDIA GPU on this machine now, or why there are none.  Never raises."""
    return _SESSION.snapshot()
