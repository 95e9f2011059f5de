"""Find data servers (``_pyme-http``) or task-distribution services (``_pyme-taskdist``).

Three sources are merged, as PYME's hybrid name service does (protocol.md §1.3-§1.6):
zeroconf on the network, the same-machine sqlite registry, and static URLs from the
configuration (``desk-static-dataservers``) or the caller.  Zeroconf entries override sqlite
entries of the same name; static URLs are always listed (named by their URL) unless another
source already lists the same address and port.

Nothing here sleeps for a fixed time.  :meth:`ServiceBrowser.start` returns at once; services
appear as zeroconf resolves them and as the sqlite registry is polled, and each change of the
list is passed to ``on_change``.  A service is listed only while its TCP port accepts
connections: new ones are probed when first seen, all of them every ``recheck_interval``
seconds, with bounded connect time-outs.  Services whose name contains this computer's name
come first (data locality, §1.3).

Name filtering follows PYME by default: a service is kept when the filter is a substring of its
name (an empty or missing filter keeps everything).  ``exact_filter=True`` keeps only names
whose bracketed cluster name equals the filter (``PYMEDataServer [<filter>]:...``).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf import ServiceBrowser as ZeroconfServiceBrowser

from pyme_desk.discovery.sqlite_registry import (ServiceRecord, SqliteRegistry, port_answers,
                                                 probe_endpoints)
from pyme_desk.names import computer_name

log = logging.getLogger(__name__)

Endpoint = tuple[str, int]
OnChange = Callable[[list[ServiceRecord]], None]

#: How often the sqlite registry is re-read for new rows (PYME caches its list for 1 s).
SQLITE_POLL_S = 1.0
#: How long zeroconf may take to resolve one announced service.
RESOLVE_TIMEOUT_MS = 3000


def static_record(url: str) -> ServiceRecord:
    """A service named by its URL, for a server given by hand (``http://host:port/``)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port or 80
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"static data server {url!r} is not an http://<host>:<port>/ URL")
    return ServiceRecord(text, parts.hostname, port, "static", 0.0)


def record_from_service_info(info: ServiceInfo, seen_at: float) -> ServiceRecord | None:
    """The service a resolved zeroconf record describes, or None if it has no IPv4 address or port."""
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    suffix = "." + info.type
    name = info.name[: -len(suffix)] if info.name.endswith(suffix) else info.name
    return ServiceRecord(name, addresses[0], int(info.port), "zeroconf", seen_at)


def name_matches(name: str, name_filter: str | None, exact: bool = False) -> bool:
    """PYME's substring rule, or with ``exact`` the bracketed cluster name must equal the filter."""
    if name_filter is None:
        return True
    if exact:
        return re.match(r"[^\[]*\[" + re.escape(name_filter) + r"\]:", name) is not None
    return name_filter in name


def merge_services(sqlite: Iterable[ServiceRecord], zeroconf: Iterable[ServiceRecord],
                   static: Iterable[ServiceRecord], *, alive: Callable[[Endpoint], bool],
                   name_filter: str | None, exact_filter: bool, local_name: str) -> list[ServiceRecord]:
    """One list from the three sources: zeroconf overrides sqlite by name, the name filter applies
    to both, static entries are added unless their endpoint is already listed; only endpoints
    for which ``alive`` is true are kept; names containing ``local_name`` come first."""
    by_name = {r.name: r for r in sqlite}
    by_name.update((r.name, r) for r in zeroconf)
    listed = [r for r in by_name.values() if name_matches(r.name, name_filter, exact_filter) and alive(r.endpoint)]
    endpoints = {r.endpoint for r in listed}
    for r in static:
        if alive(r.endpoint) and r.endpoint not in endpoints:
            listed.append(r)
            endpoints.add(r.endpoint)
    return sorted(listed, key=lambda r: local_name not in r.name)


class ServiceBrowser:
    """Keep a live, filtered list of the services of one protocol.

    ``services()`` returns the current list; ``wait_for(n, timeout)`` blocks until ``n`` are
    listed; ``on_change(services)`` is called from a background thread after every change.
    ``recheck_interval`` (s) is how often every listed port is probed again; ``probe_timeout`` (s)
    bounds each TCP connect.  ``sqlite_directory`` overrides the temp directory of the sqlite
    registry.  Static URLs that are not ``http://host:port/`` raise ValueError.
    """

    def __init__(self, protocol: str = "_pyme-http", name_filter: str | None = None, *,
                 use_zeroconf: bool = True, use_sqlite: bool = True, static_urls: Iterable[str] = (),
                 exact_filter: bool = False, on_change: OnChange | None = None,
                 recheck_interval: float = 10.0, probe_timeout: float = 2.0,
                 sqlite_directory: str | Path | None = None):
        self.protocol = protocol
        self.name_filter = name_filter
        self.exact_filter = exact_filter
        self.use_zeroconf = use_zeroconf
        self.recheck_interval = recheck_interval
        self.probe_timeout = probe_timeout
        #: Why zeroconf could not be started (None when it runs or was not asked for).
        self.zeroconf_error: str | None = None
        self._static = [static_record(u) for u in static_urls]
        self._registry = SqliteRegistry(protocol, sqlite_directory) if use_sqlite else None
        self._on_change = on_change
        self._local_name = computer_name()

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._callback_lock = threading.Lock()
        self._zeroconf_records: dict[str, ServiceRecord] = {}
        self._sqlite_records: list[ServiceRecord] = []
        self._alive: dict[Endpoint, bool] = {}
        self._current: list[ServiceRecord] = []

        self._stop = threading.Event()
        self._scanned = threading.Event()
        self._thread: threading.Thread | None = None
        self._zeroconf: Zeroconf | None = None
        self._zeroconf_browser: ZeroconfServiceBrowser | None = None
        self._resolver: ThreadPoolExecutor | None = None

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin browsing in the background; returns at once."""
        if self._thread is not None:
            return
        if self.use_zeroconf:
            self._start_zeroconf()
        self._thread = threading.Thread(target=self._poll_loop, name="pyme-desk-browser", daemon=True)
        self._thread.start()

    def services(self) -> list[ServiceRecord]:
        """The services listed now: filtered, answering, this computer's first."""
        with self._lock:
            return list(self._current)

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[ServiceRecord]:
        """Block until at least ``n`` services are listed or ``timeout`` s pass; returns the list."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._current) >= n, timeout)
            return list(self._current)

    def wait_scanned(self, timeout: float = 5.0) -> bool:
        """Block until the sqlite registry and static URLs have been read and probed once."""
        return self._scanned.wait(timeout)

    def stop(self) -> None:
        """Stop browsing and shut zeroconf down; safe to call more than once."""
        self._stop.set()
        if self._zeroconf_browser is not None:
            self._zeroconf_browser.cancel()
        if self._zeroconf is not None:
            self._zeroconf.close()
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.probe_timeout + 5.0)
        self._zeroconf_browser = self._zeroconf = self._resolver = None

    def __enter__(self) -> "ServiceBrowser":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- zeroconf --------------------------------------------------------------------------------

    def _start_zeroconf(self) -> None:
        try:
            self._zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
            self._resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pyme-desk-resolve")
            self._zeroconf_browser = ZeroconfServiceBrowser(
                self._zeroconf, f"{self.protocol}._tcp.local.", handlers=[self._on_zeroconf_event])
        except Exception as e:  # no multicast-capable interface, ...: the other sources still work
            self.zeroconf_error = f"zeroconf is unavailable: {e}"
            log.warning("%s; listing sqlite and static services only", self.zeroconf_error)
            if self._zeroconf is not None:
                self._zeroconf.close()
            self._zeroconf = None

    def _on_zeroconf_event(self, zeroconf: Zeroconf, service_type: str, name: str,
                           state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            short = name[: -len(service_type) - 1] if name.endswith("." + service_type) else name
            with self._lock:
                self._zeroconf_records.pop(short, None)
            self._publish()
            return
        resolver = self._resolver
        if resolver is not None and not self._stop.is_set():
            try:
                resolver.submit(self._resolve, zeroconf, service_type, name)
            except RuntimeError:  # shut down meanwhile
                pass

    def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        if self._stop.is_set():
            return
        try:
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        except Exception as e:  # zeroconf closed under us, malformed packet, ...
            log.debug("cannot resolve %s: %s", name, e)
            return
        record = record_from_service_info(info, time.time()) if info is not None else None
        if record is None:
            return
        alive = port_answers(record.address, record.port, self.probe_timeout)
        with self._lock:
            self._zeroconf_records[record.name] = record
            self._alive[record.endpoint] = alive
        self._publish()

    # -- polling and liveness ----------------------------------------------------------------------

    def _poll_loop(self) -> None:
        next_full_check = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            full = now >= next_full_check
            if full:
                next_full_check = now + self.recheck_interval
            try:
                self._refresh(full)
            except Exception:  # keep browsing whatever one round hit
                log.exception("service discovery round failed")
            self._scanned.set()
            self._stop.wait(min(SQLITE_POLL_S, self.recheck_interval))

    def _refresh(self, full: bool) -> None:
        """Re-read sqlite, probe new endpoints (all of them when ``full``), drop dead sqlite rows."""
        started = time.time()
        sqlite_records = self._registry.services() if self._registry is not None else []
        with self._lock:
            candidates = sqlite_records + list(self._zeroconf_records.values()) + self._static
            known = set(self._alive)
        to_probe = [r.endpoint for r in candidates if full or r.endpoint not in known]
        results = probe_endpoints(to_probe, self.probe_timeout)
        if self._registry is not None:
            dead_rows = {r.endpoint for r in sqlite_records if results.get(r.endpoint) is False}
            self._registry.remove_endpoints(dead_rows, registered_before=started)
        with self._lock:
            self._sqlite_records = [r for r in sqlite_records if results.get(r.endpoint) is not False]
            self._alive.update(results)
            in_use = {r.endpoint for r in self._sqlite_records + list(self._zeroconf_records.values())
                      + self._static}
            self._alive = {ep: ok for ep, ok in self._alive.items() if ep in in_use}
        self._publish()

    # -- the merged list ----------------------------------------------------------------------------

    def _merged(self) -> list[ServiceRecord]:
        return merge_services(self._sqlite_records, self._zeroconf_records.values(), self._static,
                              alive=lambda ep: self._alive.get(ep, False), name_filter=self.name_filter,
                              exact_filter=self.exact_filter, local_name=self._local_name)

    def _publish(self) -> None:
        """Recompute the list; on a change wake waiters and call ``on_change`` (in order)."""
        with self._callback_lock:
            with self._changed:
                merged = self._merged()
                if merged == self._current:
                    return
                self._current = merged
                self._changed.notify_all()
            if self._on_change is not None and not self._stop.is_set():
                try:
                    self._on_change(list(merged))
                except Exception:
                    log.exception("on_change callback failed")
