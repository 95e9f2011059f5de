"""One child process of the supervisor: started apart, watched, stopped without leaving orphans.

* The child runs in its own process group (POSIX session / Windows ``CREATE_NEW_PROCESS_GROUP``),
  so a Ctrl-C in the supervisor's terminal reaches only the supervisor, which stops the
  services in order.
* Its stdin is a pipe the supervisor never writes to: the lifeline (:mod:`pyme_desk.lifeline`).
  If the supervisor dies, even by ``kill -9``, the pipe closes and the child shuts down.
  On Windows every child is also put in one Job Object that kills its members when the
  supervisor's handle to it closes, i.e. when the supervisor process ends.
* Its stdout and stderr are read line by line on a daemon thread and handed to ``on_line``.
* :meth:`ChildProcess.stop` asks politely (closes the lifeline, and sends SIGTERM on POSIX or
  CTRL_BREAK on Windows), waits, then kills the child and everything it started.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Callable, Sequence

import psutil

from pyme_desk.lifeline import LIFELINE_ENV

#: How long :meth:`ChildProcess.stop` waits for a graceful exit before killing.
STOP_GRACE_S = 5.0


class ChildProcess:
    """A started service process; see the module docstring."""

    def __init__(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                 env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        child_env = dict(os.environ if env is None else env)
        child_env[LIFELINE_ENV] = "1"
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.setdefault("PYTHONIOENCODING", "utf-8")
        kwargs: dict = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        self.argv = list(argv)
        self._popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=child_env, cwd=cwd,
                                       bufsize=0, **kwargs)
        if sys.platform == "win32":
            _windows_job().add(self._popen.pid)
        self.pid: int = self._popen.pid
        self._reader = threading.Thread(target=self._read_output, args=(on_line,),
                                        name=f"output-{self.pid}", daemon=True)
        self._reader.start()

    def poll(self) -> int | None:
        """The exit code, or None while the child runs."""
        return self._popen.poll()

    def stop(self, grace: float = STOP_GRACE_S) -> int:
        """Stop gracefully within ``grace`` seconds, else kill; returns the exit code."""
        if self._popen.poll() is None:
            descendants = _descendants(self.pid)
            self._close_lifeline()
            self._send_stop_signal()
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            self._kill_all(descendants)
        else:
            self._kill_all(_descendants(self.pid))
        return self._popen.wait()

    def kill(self) -> int:
        """Kill the child and everything it started at once; returns the exit code."""
        self._kill_all(_descendants(self.pid))
        return self._popen.wait()

    def cleanup(self) -> None:
        """After the child died on its own: end what it left behind and close the pipes."""
        self._kill_all(_descendants(self.pid))
        self._popen.wait()
        self._reader.join(1.0)

    def _close_lifeline(self) -> None:
        try:
            if self._popen.stdin is not None:
                self._popen.stdin.close()
        except OSError:
            pass

    def _send_stop_signal(self) -> None:
        try:
            if sys.platform == "win32":
                # reaches the child's process group; fails without a shared console, in which
                # case the closed lifeline is the request to stop
                os.kill(self.pid, signal.CTRL_BREAK_EVENT)
            else:
                os.kill(self.pid, signal.SIGTERM)
        except OSError:
            pass

    def _kill_all(self, descendants: list[psutil.Process]) -> None:
        self._close_lifeline()
        if self._popen.poll() is None:
            try:
                self._popen.kill()
            except OSError:
                pass
        if sys.platform != "win32":
            try:  # whatever is left in the child's own process group (orphaned workers)
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        for p in descendants:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(descendants, timeout=2.0)

    def _read_output(self, on_line: Callable[[str], None]) -> None:
        stream = self._popen.stdout
        assert stream is not None
        try:
            for raw in iter(stream.readline, b""):
                on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        finally:
            stream.close()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class _WindowsJob:
    """A Job Object whose processes are killed when this process ends (Windows only)."""

    _KILL_ON_JOB_CLOSE = 0x2000
    _EXTENDED_LIMIT_INFORMATION = 9
    _PROCESS_SET_QUOTA_AND_TERMINATE = 0x0100 | 0x0001

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        class BasicLimits(ctypes.Structure):
            _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                        ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                        ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
                        ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD),
                        ("SchedulingClass", wintypes.DWORD)]

        class IoCounters(ctypes.Structure):
            _fields_ = [(n, ctypes.c_uint64) for n in ("ReadOperationCount", "WriteOperationCount",
                                                        "OtherOperationCount", "ReadTransferCount",
                                                        "WriteTransferCount", "OtherTransferCount")]

        class ExtendedLimits(ctypes.Structure):
            _fields_ = [("BasicLimitInformation", BasicLimits), ("IoInfo", IoCounters),
                        ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                        ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        k32.CreateJobObjectW.restype = wintypes.HANDLE
        k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        k32.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
        k32.OpenProcess.restype = wintypes.HANDLE
        k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        k32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        k32.CloseHandle.argtypes = [wintypes.HANDLE]
        self._k32 = k32
        self._handle = k32.CreateJobObjectW(None, None)
        if not self._handle:
            raise ctypes.WinError(ctypes.get_last_error())
        limits = ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = self._KILL_ON_JOB_CLOSE
        if not k32.SetInformationJobObject(self._handle, self._EXTENDED_LIMIT_INFORMATION,
                                           ctypes.byref(limits), ctypes.sizeof(limits)):
            raise ctypes.WinError(ctypes.get_last_error())
        # the handle is deliberately never closed: the OS closes it when this process ends,
        # and that is what kills the children

    def add(self, pid: int) -> None:
        """Put process ``pid`` (and what it starts from now on) into the job."""
        import ctypes

        process = self._k32.OpenProcess(self._PROCESS_SET_QUOTA_AND_TERMINATE, False, pid)
        if not process:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            if not self._k32.AssignProcessToJobObject(self._handle, process):
                raise ctypes.WinError(ctypes.get_last_error())
        finally:
            self._k32.CloseHandle(process)


_JOB: _WindowsJob | None = None
_JOB_LOCK = threading.Lock()


def _windows_job() -> _WindowsJob:
    global _JOB
    with _JOB_LOCK:
        if _JOB is None:
            _JOB = _WindowsJob()
        return _JOB
