"""The client fed by a real ServiceBrowser (same-machine registry and static URLs, no multicast)."""
import time

import pytest

from pyme_desk.cluster import ClusterClient, NoServersError
from pyme_desk.discovery.browser import ServiceBrowser
from pyme_desk.storage.server import DataServer


def test_servers_advertised_in_the_local_registry_are_used(tmp_path):
    # One process names its services by PID, so two servers here need two filter names;
    # PYME's substring rule lets the filter "disc" match both.
    servers = [DataServer(tmp_path / f"r{i}", server_filter=f"disc{i}", advertise="local").start()
               for i in range(2)]
    other = DataServer(tmp_path / "other", server_filter="elsewhere", advertise="local").start()
    try:
        with ServiceBrowser("_pyme-http", "disc", use_zeroconf=False) as browser, \
                ClusterClient(browser=browser, server_filter="disc", token="") as client:
            assert client.servers()  # the first call waits for discovery to list one
            assert len(browser.wait_for(2, timeout=5)) == 2
            assert sorted(client.servers()) == sorted(s.url for s in servers)
            client.put_file("d/a.txt", b"a")
            client.put_file("d/b.txt", b"b")
            assert client.listdir("d") == ["a.txt", "b.txt"]
            assert not (other.root.path / "d").exists()
    finally:
        for s in servers + [other]:
            s.stop()


def test_no_servers_is_a_clear_error(closed_port_url):
    with ServiceBrowser("_pyme-http", "nobody", use_zeroconf=False, use_sqlite=False,
                        static_urls=[closed_port_url], probe_timeout=0.2) as browser:
        client = ClusterClient(browser=browser, server_filter="nobody", token="", discovery_wait=0.5)
        started = time.monotonic()
        with pytest.raises(NoServersError, match="no data servers found for filter 'nobody': is the cluster running"):
            client.listdir("")
        assert time.monotonic() - started < 2.0
