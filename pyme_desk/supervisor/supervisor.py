"""The supervisor: starts a cluster's services in order, watches them, restarts them, stops them.

Qt-free; the GUI embeds it and the ``cluster`` and ``node`` commands run it headless.

* Start order follows ``ServiceSpec.requires``: a service starts only once every service it
  needs answers its readiness probe.  Each service binds port 0 and writes its address to a
  port file; its probe is then polled every 20 ms, so nothing waits on a fixed sleep.  A service
  that is not ready within ``Policy.startup_timeout`` fails with its last output lines as reason;
  one that exits with code 2 while starting (it refused its settings) fails at once.
* Health: every ``Policy.health_interval`` each ready service is probed (HTTP) and every tick
  each process is checked for life.  A failed probe makes it *degraded*; degraded for longer
  than ``Policy.hung_after`` counts as a crash.
* Crashes restart the service after an exponential back-off; more than ``Policy.max_restarts``
  crashes within ``Policy.restart_window`` seconds and it *fails*, saying why.  A restarted
  service asks for the port it had, so the URLs other services were given stay right; if it
  has to take another one, the services that depend on it are restarted with the new URL.
* Each service's stdout/stderr goes to ``<log_dir>/<name>.out.log`` (rotating) and to an
  in-memory tail; supervisor events are written there too, marked ``[supervisor]``.
* One cluster per data root (:class:`~pyme_desk.supervisor.lock.RootLock`); never as root.

Everything the outside sees is a :class:`ClusterSnapshot` (immutable); listeners added with
:meth:`Supervisor.add_listener` get one after every change, on the thread that made it (the
supervisor's own, or a caller of ``start_service``/``stop_service``); they must be quick.
"""
from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from pyme_desk.errors import UsageError, refuse_root
from pyme_desk.logs import default_log_dir
from pyme_desk.supervisor.lock import RootLock, cluster_key, default_state_dir
from pyme_desk.supervisor.process import ChildProcess
from pyme_desk.supervisor.services import (ClusterSnapshot, ServiceSpec, ServiceState, ServiceStatus,
                                           cluster_services)

log = logging.getLogger(__name__)

#: loop period while a service is starting (probe cadence) and otherwise
_FAST_TICK_S = 0.02
_SLOW_TICK_S = 0.1
#: lines of output shown in a failure reason
_REASON_LINES = 3
#: exit code of a pyme-desk command whose settings were refused (a UsageError)
_USAGE_EXIT = 2

#: probes go straight to the service, never through an http_proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Policy:
    """Time-outs and restart rules of a supervisor (seconds unless said otherwise)."""

    startup_timeout: float = 30.0
    health_interval: float = 1.0
    probe_timeout: float = 2.0
    hung_after: float = 15.0
    restart_backoff: float = 0.1  # delay before the first restart; doubles each crash
    max_backoff: float = 10.0
    max_restarts: int = 5  # crashes tolerated within restart_window
    restart_window: float = 60.0
    stop_grace: float = 5.0
    tail_lines: int = 500


@dataclass(eq=False)
class _Service:
    """The supervisor's mutable record of one service (only touched under the supervisor lock)."""

    spec: ServiceSpec
    tail: collections.deque
    output: logging.Logger
    port_file: Path
    state: ServiceState = ServiceState.STOPPED
    reason: str = ""
    since: float = field(default_factory=time.time)
    wanted: bool = False
    child: ChildProcess | None = None
    generation: int = 0  # bumped at every spawn and stop, so stale results are dropped
    url: str | None = None
    port: int = 0  # asked for at the next start: the last bound port, or 0
    inputs: dict[str, str] = field(default_factory=dict)  # dependency URLs it was started with
    crashes: collections.deque = field(default_factory=collections.deque)  # monotonic times
    restarts: int = 0
    start_at: float = 0.0  # monotonic time of the next spawn
    spawned_at: float = 0.0
    probed_at: float = 0.0
    degraded_at: float = 0.0


class Supervisor:
    """Runs the services of one cluster; see the module docstring.

    ``services`` defaults to :func:`cluster_services` for ``root`` and ``workers``.  Logs go to
    ``log_dir`` (default: the per-user log directory, ``cluster-<key>`` below it); port files
    and the root lock to ``state_dir`` (default: the per-user state directory).
    """

    def __init__(self, root: Path, services: Iterable[ServiceSpec] | None = None, *,
                 workers: int | None = None, log_dir: Path | None = None,
                 state_dir: Path | None = None, policy: Policy = Policy(),
                 env: dict[str, str] | None = None) -> None:
        self.root = Path(root).expanduser().absolute()
        specs = tuple(cluster_services(self.root, workers) if services is None else services)
        _check_specs(specs)
        self.policy = policy
        key = cluster_key(self.root)
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.log_dir = Path(log_dir) if log_dir else default_log_dir() / f"cluster-{key}"
        self._run_dir = self.state_dir / "clusters" / key
        self._env = env
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[ClusterSnapshot], None]] = []
        self._root_lock = RootLock(self.root, self.state_dir)
        self._services: dict[str, _Service] = {}
        for spec in specs:
            self._services[spec.name] = _Service(
                spec=spec, tail=collections.deque(maxlen=policy.tail_lines),
                output=logging.Logger(f"pyme_desk.supervisor.{spec.name}"),
                port_file=self._run_dir / f"{spec.name}.port")
        self._mark_unavailable()

    # -- public API --------------------------------------------------------------------------
    def start(self) -> "Supervisor":
        """Take the root lock and start every available service (returns at once)."""
        refuse_root("cluster supervisor")
        self._root_lock.acquire()
        try:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            self._open_logs()
        except OSError as e:
            self._root_lock.release()
            raise UsageError(f"cannot prepare the supervisor's directories: {e}") from None
        except BaseException:
            self._root_lock.release()
            raise
        with self._lock:
            for s in self._services.values():
                if s.state is not ServiceState.UNAVAILABLE:
                    self._want_started(s)
        self._thread = threading.Thread(target=self._monitor, name="pyme-desk-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every service, dependents first; release the root lock."""
        if self._thread is None:
            return
        self._halt.set()
        self._wake.set()
        self._thread.join()
        for name in reversed(list(self._services)):
            self.stop_service(name)
        for s in self._services.values():
            for h in list(s.output.handlers):
                h.close()
                s.output.removeHandler(h)
        self._root_lock.release()
        self._thread = None

    def __enter__(self) -> "Supervisor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def snapshot(self) -> ClusterSnapshot:
        with self._lock:
            return ClusterSnapshot(self.root, tuple(self._status(s) for s in self._services.values()))

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every available service is ready (True), or one failed or time ran out."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                snap = self.snapshot()
                if snap.all_ready:
                    return True
                if any(s.state is ServiceState.FAILED for s in snap.services):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)

    def wait_for(self, name: str, states: Iterable[ServiceState], timeout: float) -> ServiceStatus:
        """Wait until service ``name`` is in one of ``states`` (names or members); returns its status."""
        wanted = {ServiceState(state) for state in states}
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                status = self._status(self._get(name))
                left = deadline - time.monotonic()
                if status.state in wanted or left <= 0:
                    return status
                self._changed.wait(left)

    def add_listener(self, listener: Callable[[ClusterSnapshot], None]) -> None:
        """Call ``listener(snapshot)`` after every state change (see the module docstring)."""
        with self._lock:
            self._listeners.append(listener)

    def tail(self, name: str, lines: int = 100) -> list[str]:
        """The last ``lines`` lines of the service's output."""
        s = self._get(name)
        return list(s.tail)[-max(int(lines), 0):] if lines else []

    def start_service(self, name: str) -> ServiceStatus:
        """Start a stopped or failed service (no-op if it runs); returns its status."""
        s = self._get(name)
        with self._lock:
            if s.state is ServiceState.UNAVAILABLE:
                raise UsageError(f"the {s.spec.title} cannot be started: {s.reason}")
            if not s.state.running:
                s.crashes.clear()
                self._want_started(s)
                self._notify()
        self._wake.set()
        return self._status(s)

    def stop_service(self, name: str) -> ServiceStatus:
        """Stop a service (gracefully, then killed after ``Policy.stop_grace``); returns its status."""
        s = self._get(name)
        with self._lock:
            s.wanted = False
            child, s.child = s.child, None
            s.generation += 1
            if s.state is ServiceState.UNAVAILABLE:
                return self._status(s)
            if child is None:
                self._set(s, ServiceState.STOPPED, "")
                return self._status(s)
            self._set(s, ServiceState.STOPPING, "")
        code = child.stop(self.policy.stop_grace)
        self._event(s, f"stopped (exit code {code})")
        with self._lock:
            if s.state is ServiceState.STOPPING:
                self._set(s, ServiceState.STOPPED, "")
            return self._status(s)

    def restart_service(self, name: str) -> ServiceStatus:
        self.stop_service(name)
        return self.start_service(name)

    # -- monitor loop ------------------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._halt.is_set():
            busy = False
            for s in list(self._services.values()):
                if self._halt.is_set():
                    break
                try:
                    busy |= self._tick(s)
                except Exception:  # the loop must survive anything one service does
                    log.exception("supervising the %s failed", s.spec.title)
            self._wake.wait(_FAST_TICK_S if busy else _SLOW_TICK_S)
            self._wake.clear()

    def _tick(self, s: _Service) -> bool:
        """Advance one service; True while it needs the fast cadence."""
        moved_child = None
        with self._lock:
            if not s.wanted or not s.state.running:
                return False
            if s.child is None:
                return self._maybe_spawn(s)
            code = s.child.poll()
            if code is not None:
                self._crashed(s, code)
                return True
            if s.state is ServiceState.READY and self._inputs_changed(s):
                moved_child, s.child = s.child, None
                s.generation += 1
                s.start_at = time.monotonic()
                self._event(s, "restarting: a service it depends on has a new address")
                self._set(s, ServiceState.STARTING, "restarting: a service it depends on has a new address")
            gen, state = s.generation, s.state
        if moved_child is not None:
            moved_child.stop(self.policy.stop_grace)
            return True
        if state is ServiceState.STARTING:
            return self._check_startup(s, gen)
        return self._check_health(s, gen)

    def _maybe_spawn(self, s: _Service) -> bool:
        now = time.monotonic()
        if now < s.start_at:
            return True
        waiting = [self._services[d] for d in s.spec.requires
                   if self._services[d].state is not ServiceState.READY]
        if waiting:
            names = ", ".join(f"the {d.spec.title} ({d.state.value})" for d in waiting)
            if s.reason != f"waiting for {names}":
                self._set(s, ServiceState.STARTING, f"waiting for {names}")
            return False
        s.inputs = {d: self._services[d].url or "" for d in s.spec.requires}
        values = {"port": str(s.port), "port_file": str(s.port_file), "log_dir": str(self.log_dir),
                  "run_dir": str(self._run_dir), **s.inputs}
        try:
            s.port_file.unlink()
        except FileNotFoundError:
            pass
        argv = s.spec.command(values)
        try:
            child = ChildProcess(argv, self._output_sink(s), env=self._env)
        except OSError as e:
            self._fail(s, f"could not start {argv[0]}: {e}")
            return False
        s.child, s.generation, s.url = child, s.generation + 1, None
        s.spawned_at = now
        self._event(s, f"started (pid {child.pid}): {' '.join(argv[1:])}")
        self._set(s, ServiceState.STARTING, "starting")
        return True

    def _check_startup(self, s: _Service, gen: int) -> bool:
        url = s.url or self._read_port_file(s)
        if url is not None and self._probe(url, s.spec.probe_path):
            with self._lock:
                if s.generation == gen and s.state is ServiceState.STARTING:
                    s.url, s.probed_at = url, time.monotonic()
                    s.port = _port_of(url)
                    self._event(s, f"ready at {url} after {time.monotonic() - s.spawned_at:.2f} s")
                    self._set(s, ServiceState.READY, "")
            return False
        with self._lock:
            if s.generation != gen or s.state is not ServiceState.STARTING:
                return True
            s.url = url
            if time.monotonic() - s.spawned_at > self.policy.startup_timeout:
                child, s.child = s.child, None
                s.generation += 1
                self._fail(s, f"not ready within {self.policy.startup_timeout:.0f} s" + self._last_output(s))
            else:
                return True
        if child is not None:
            child.stop(self.policy.stop_grace)
        return False

    def _check_health(self, s: _Service, gen: int) -> bool:
        now = time.monotonic()
        if now - s.probed_at < self.policy.health_interval or s.url is None:
            return False
        ok = self._probe(s.url, s.spec.probe_path)
        with self._lock:
            if s.generation != gen or not s.state.running:
                return False
            s.probed_at = time.monotonic()
            if ok:
                if s.state is ServiceState.DEGRADED:
                    self._event(s, "answering again")
                    self._set(s, ServiceState.READY, "")
                return False
            if s.state is ServiceState.READY:
                s.degraded_at = s.probed_at
                self._event(s, f"not answering {s.spec.probe_path}")
                self._set(s, ServiceState.DEGRADED, f"not answering {s.spec.probe_path}")
            elif s.probed_at - s.degraded_at > self.policy.hung_after:
                child = s.child
                if child is not None:
                    child.kill()
                    self._crashed(s, None)
        return False

    def _crashed(self, s: _Service, code: int | None) -> None:
        """The process ended (or hung, ``code`` None) while wanted: restart or give up."""
        child, s.child = s.child, None
        s.generation += 1
        if child is not None:
            child.cleanup()
        what = (f"stopped answering for {self.policy.hung_after:.0f} s and was killed" if code is None
                else describe_exit(code))
        self._event(s, what)
        was_starting = s.state is ServiceState.STARTING
        if was_starting and code == _USAGE_EXIT:
            if s.port == 0:
                self._fail(s, f"refused its settings{self._last_output(s)}")
                return
        if was_starting:
            s.port = 0  # maybe its old port is taken: take any
        now = time.monotonic()
        s.crashes.append(now)
        while s.crashes and now - s.crashes[0] > self.policy.restart_window:
            s.crashes.popleft()
        if len(s.crashes) > self.policy.max_restarts:
            self._fail(s, f"{what}; it crashed {len(s.crashes)} times within "
                          f"{self.policy.restart_window:.0f} s, so it is not restarted again"
                          f"{self._last_output(s)}")
            return
        delay = min(self.policy.restart_backoff * 2 ** (len(s.crashes) - 1), self.policy.max_backoff)
        s.restarts += 1
        s.start_at = now + delay
        self._set(s, ServiceState.STARTING, f"{what}; restarting in {delay:.1f} s "
                                            f"(crash {len(s.crashes)} of {self.policy.max_restarts} allowed "
                                            f"within {self.policy.restart_window:.0f} s)")

    # -- helpers -----------------------------------------------------------------------------
    def _get(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise UsageError(f"no service called {name!r}; services: {', '.join(self._services)}") from None

    def _want_started(self, s: _Service) -> None:
        s.wanted = True
        s.start_at = time.monotonic()
        self._set(s, ServiceState.STARTING, "starting")

    def _fail(self, s: _Service, reason: str) -> None:
        s.wanted = False
        self._event(s, f"failed: {reason}")
        self._set(s, ServiceState.FAILED, reason)

    def _set(self, s: _Service, state: ServiceState, reason: str) -> None:
        if s.state is not state:
            s.since = time.time()
        s.state, s.reason = state, reason
        self._notify()

    def _notify(self) -> None:
        self._changed.notify_all()
        if self._listeners:
            snap = self.snapshot()
            for listener in list(self._listeners):
                try:
                    listener(snap)
                except Exception:
                    log.exception("a supervisor listener failed")

    def _status(self, s: _Service) -> ServiceStatus:
        return ServiceStatus(name=s.spec.name, title=s.spec.title, state=s.state, reason=s.reason,
                             url=s.url if s.state.running else None,
                             pid=s.child.pid if s.child is not None else None,
                             restarts=s.restarts, since=s.since, log_tail=tuple(list(s.tail)[-20:]))

    def _inputs_changed(self, s: _Service) -> bool:
        for dep, url in s.inputs.items():
            d = self._services[dep]
            if d.state is ServiceState.READY and d.url and d.url != url:
                return True
        return False

    def _mark_unavailable(self) -> None:
        for s in self._services.values():  # in start order, so a missing dependency is known
            if not s.spec.available():
                s.state = ServiceState.UNAVAILABLE
                s.reason = f"not available yet in this build ({s.spec.module} is missing)"
                continue
            missing = [self._services[d].spec.title for d in s.spec.requires
                       if self._services[d].state is ServiceState.UNAVAILABLE]
            if missing:
                s.state = ServiceState.UNAVAILABLE
                s.reason = f"needs the {', '.join(missing)}, which is not available"

    def _open_logs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fmt = logging.Formatter("%(message)s")
        for s in self._services.values():
            handler = logging.handlers.RotatingFileHandler(self.log_dir / f"{s.spec.name}.out.log",
                                                           maxBytes=5_000_000, backupCount=3,
                                                           encoding="utf-8")
            handler.setFormatter(fmt)
            s.output.addHandler(handler)
            s.output.setLevel(logging.INFO)
            s.output.propagate = False

    def _output_sink(self, s: _Service) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            s.tail.append(line)
            s.output.info(line)
        return on_line

    def _event(self, s: _Service, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [supervisor] {s.spec.title} {message}"
        s.tail.append(line)
        s.output.info(line)

    def _last_output(self, s: _Service) -> str:
        lines = [ln for ln in s.tail if ln.strip() and "[supervisor]" not in ln][-_REASON_LINES:]
        return (". Last output: " + " | ".join(lines)) if lines else ". It printed nothing"

    def _read_port_file(self, s: _Service) -> str | None:
        try:
            info = json.loads(s.port_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if s.child is None or info.get("pid") != s.child.pid:
            return None
        return str(info.get("url") or "") or None

    def _probe(self, url: str, path: str) -> bool:
        try:
            with _OPENER.open(url.rstrip("/") + path, timeout=self.policy.probe_timeout) as r:
                r.read()
                return r.status == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False


def describe_exit(code: int) -> str:
    """``exited with code 1`` / ``was killed by SIGKILL``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _port_of(url: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(url).port or 0


def _check_specs(specs: tuple[ServiceSpec, ...]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"two services are called {spec.name!r}")
        unknown = [d for d in spec.requires if d not in seen]
        if unknown:
            raise ValueError(f"service {spec.name!r} requires {unknown}, which must come before it")
        seen.add(spec.name)

