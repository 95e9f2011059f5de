"""The service browser over sqlite and static sources (zeroconf is off: no multicast in tests)."""
from __future__ import annotations

import threading
import time

import pytest

from pyme_desk.discovery.browser import ServiceBrowser, merge_services, name_matches, static_record
from pyme_desk.discovery.sqlite_registry import ServiceRecord, SqliteRegistry


def make_browser(tmp_path, name_filter=None, **kw):
    kw.setdefault("use_zeroconf", False)
    kw.setdefault("sqlite_directory", tmp_path)
    kw.setdefault("probe_timeout", 0.5)
    return ServiceBrowser("_pyme-http", name_filter, **kw)


class Changes:
    """Collects on_change calls and lets a test wait for one that satisfies a condition."""

    def __init__(self):
        self.calls: list[list[ServiceRecord]] = []
        self._cond = threading.Condition()

    def __call__(self, services):
        with self._cond:
            self.calls.append(services)
            self._cond.notify_all()

    def wait(self, predicate, timeout=5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.calls and predicate(self.calls[-1]), timeout)


def test_sqlite_and_static_sources_are_merged_and_reported(tmp_path, listener):
    a, b = listener(), listener()
    SqliteRegistry("_pyme-http", tmp_path).register("PYMEDataServer [lab]:pc1 - PID:1", "127.0.0.1",
                                                     a.getsockname()[1])
    static_url = f"http://127.0.0.1:{b.getsockname()[1]}/"
    changes = Changes()
    with make_browser(tmp_path, static_urls=[static_url], on_change=changes) as browser:
        found = browser.wait_for(2, timeout=5)
    assert [(s.source, s.url) for s in found] == [
        ("sqlite", f"http://127.0.0.1:{a.getsockname()[1]}/"), ("static", static_url)]
    assert found[1].name == static_url
    assert changes.calls and changes.calls[-1] == found


def test_start_returns_at_once_and_dead_services_are_never_listed(tmp_path, listener, closed_port):
    live = listener()
    reg = SqliteRegistry("_pyme-http", tmp_path)
    reg.register("PYMEDataServer [lab]:dead - PID:1", "127.0.0.1", closed_port)
    reg.register("PYMEDataServer [lab]:live - PID:2", "127.0.0.1", live.getsockname()[1])
    browser = make_browser(tmp_path, static_urls=[f"http://127.0.0.1:{closed_port}/"])
    t0 = time.monotonic()
    browser.start()
    assert time.monotonic() - t0 < 0.2
    try:
        assert browser.wait_scanned(timeout=5)
        assert [s.name for s in browser.services()] == ["PYMEDataServer [lab]:live - PID:2"]
    finally:
        browser.stop()
    # the dead row was also removed from the shared file, as PYME clients do
    assert [s.name for s in reg.services()] == ["PYMEDataServer [lab]:live - PID:2"]


def test_substring_and_exact_filters(tmp_path, listener):
    reg = SqliteRegistry("_pyme-http", tmp_path)
    for cluster in ("foo", "foobar", "bar"):
        reg.register(f"PYMEDataServer [{cluster}]:pc - PID:1", "127.0.0.1", listener().getsockname()[1])

    def names(**kw):
        with make_browser(tmp_path, **kw) as browser:
            assert browser.wait_scanned(timeout=5)
            return sorted(s.name for s in browser.services())

    assert names(name_filter="foo") == ["PYMEDataServer [foo]:pc - PID:1", "PYMEDataServer [foobar]:pc - PID:1"]
    assert names(name_filter="foo", exact_filter=True) == ["PYMEDataServer [foo]:pc - PID:1"]
    assert len(names(name_filter="")) == 3
    assert len(names()) == 3


@pytest.mark.parametrize("name, name_filter, exact, expected", [
    ("PYMEDataServer [a.b]:pc - PID:1", "a.b", True, True),
    ("PYMEDataServer [axb]:pc - PID:1", "a.b", True, False),  # the filter is not a regex
    ("PYMEDataServer [lab]:pc - PID:1", "pc", True, False),
    ("PYMEDataServer [lab]:pc - PID:1", "pc", False, True),
    ("PYMERuleServer:pc - PID:1", None, True, True),
])
def test_name_matches(name, name_filter, exact, expected):
    assert name_matches(name, name_filter, exact) is expected


def test_services_of_this_computer_come_first(tmp_path, listener, monkeypatch):
    monkeypatch.setenv("PYME_COMPUTERNAME", "thisbox")
    reg = SqliteRegistry("_pyme-http", tmp_path)
    reg.register("PYMEDataServer [c]:otherbox - PID:1", "127.0.0.1", listener().getsockname()[1])
    time.sleep(0.01)
    reg.register("PYMEDataServer [c]:thisbox - PID:2", "127.0.0.1", listener().getsockname()[1])
    with make_browser(tmp_path, "c") as browser:
        found = browser.wait_for(2, timeout=5)
    assert [s.name for s in found] == ["PYMEDataServer [c]:thisbox - PID:2", "PYMEDataServer [c]:otherbox - PID:1"]


def test_zeroconf_overrides_sqlite_and_static_duplicates_are_dropped():
    sqlite = [ServiceRecord("S", "127.0.0.1", 1, "sqlite"), ServiceRecord("T", "127.0.0.1", 2, "sqlite")]
    zeroconf = [ServiceRecord("S", "10.0.0.1", 3, "zeroconf")]
    static = [static_record("http://10.0.0.1:3/"), static_record("http://10.0.0.9:4/")]
    merged = merge_services(sqlite, zeroconf, static, alive=lambda ep: ep != ("127.0.0.1", 2),
                            name_filter=None, exact_filter=False, local_name="nobody")
    assert [(r.name, r.source) for r in merged] == [("S", "zeroconf"), ("http://10.0.0.9:4/", "static")]


def test_a_service_registered_while_browsing_appears(tmp_path, listener):
    changes = Changes()
    with make_browser(tmp_path, on_change=changes) as browser:
        assert browser.wait_scanned(timeout=5)
        assert browser.services() == []
        SqliteRegistry("_pyme-http", tmp_path).register("PYMEDataServer [x]:pc - PID:3", "127.0.0.1",
                                                         listener().getsockname()[1])
        assert [s.name for s in browser.wait_for(1, timeout=5)] == ["PYMEDataServer [x]:pc - PID:3"]
    assert changes.wait(lambda s: len(s) == 1, timeout=0)


def test_a_service_whose_port_closes_is_dropped(tmp_path, listener):
    server = listener()
    SqliteRegistry("_pyme-http", tmp_path).register("PYMEDataServer [x]:pc - PID:4", "127.0.0.1",
                                                     server.getsockname()[1])
    static_server = listener()
    changes = Changes()
    with make_browser(tmp_path, recheck_interval=0.1, on_change=changes,
                      static_urls=[f"http://127.0.0.1:{static_server.getsockname()[1]}/"]) as browser:
        assert len(browser.wait_for(2, timeout=5)) == 2
        server.close()
        static_server.close()
        assert changes.wait(lambda s: s == [], timeout=5)
        assert browser.services() == []


def test_wait_for_times_out_with_what_it_has(tmp_path):
    with make_browser(tmp_path) as browser:
        t0 = time.monotonic()
        assert browser.wait_for(1, timeout=0.3) == []
        assert 0.25 < time.monotonic() - t0 < 2.0


def test_stop_is_idempotent(tmp_path):
    browser = make_browser(tmp_path)
    browser.stop()  # before start: nothing to stop
    browser = make_browser(tmp_path)
    browser.start()
    browser.stop()
    browser.stop()
    assert browser._thread is not None and not browser._thread.is_alive()


@pytest.mark.parametrize("url", ["ftp://h:1/", "h:15348", "http://:15348/", "http://h:notaport/"])
def test_bad_static_urls_are_refused(tmp_path, url):
    with pytest.raises(ValueError, match="http://<host>:<port>/"):
        make_browser(tmp_path, static_urls=[url])
