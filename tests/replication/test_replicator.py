"""Replication across three real data servers on loopback."""
import hashlib
import threading
import time

import numpy as np
import pytest

from pyme_desk.cluster import ClusterClient
from pyme_desk.replication import Replicator, choose_targets
from pyme_desk.storage.server import DataServer

FILTER = "rep"


class Servers:
    def __init__(self, tmp_path, n=3):
        self.servers = [DataServer(tmp_path / f"root{i}", server_filter=FILTER).start() for i in range(n)]
        self.urls = [s.url for s in self.servers]
        self.roots = [s.root.path for s in self.servers]
        self.stopped = set()

    def client(self, urls=None):
        return ClusterClient(urls or self.urls, server_filter=FILTER, token="", listing_cache_s=0.0)

    def holders(self, path):
        return [i for i, root in enumerate(self.roots) if (root / path).is_file()]

    def stop(self, i):
        if i not in self.stopped:
            self.stopped.add(i)
            self.servers[i].stop()

    def stop_all(self):
        for i in range(len(self.servers)):
            self.stop(i)


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path)
    yield s
    s.stop_all()


def spool_series(client, name, frames=5, complete=True):
    files = [(f"{name}/metadata.json", b'{"Camera.CycleTime": 0.01}')]
    files += [(f"{name}/frame{i:05d}.pzf", np.random.default_rng(i).bytes(20000 + i)) for i in range(frames)]
    client.put_files(files)
    if complete:
        client.put_file(f"{name}/events.json", b"[]")
    return [p for p, _ in files] + ([f"{name}/events.json"] if complete else [])


def test_spooled_series_ends_up_on_two_servers_and_survives_a_dead_server(servers):
    with servers.client([servers.urls[0]]) as one:
        paths = spool_series(one, "2024_1_1/cell_1")
    assert all(servers.holders(p) == [0] for p in paths)
    with servers.client() as client:
        replicator = Replicator(client, copies=2, quiet_s=0)
        report = replicator.scan_once()
        assert report["copied"] == len(paths) and report["under_replicated_count"] == 0
        for p in paths:
            held = servers.holders(p)
            assert len(held) == 2 and 0 in held, p
            digests = {hashlib.sha256((servers.roots[i] / p).read_bytes()).hexdigest() for i in held}
            assert len(digests) == 1
        # nothing left to do: a second scan copies nothing and reports everything replicated
        again = replicator.scan_once()
        assert again["copied"] == 0 and again["replicated"] == len(paths)
        status = replicator.status()
        assert status["copied_files"] == len(paths) and status["scans"] == 2 and not status["running"]
    originals = {p: (servers.roots[0] / p).read_bytes() for p in paths}
    servers.stop(0)
    with servers.client() as survivor_view:
        for p in paths:
            assert survivor_view.get_file(p) == originals[p]


def test_incomplete_series_waits_for_events_json(servers):
    with servers.client([servers.urls[0]]) as one:
        paths = spool_series(one, "s/run", frames=3, complete=False)
        with servers.client() as client:
            replicator = Replicator(client, copies=2, quiet_s=0)
            report = replicator.scan_once()
            assert report["copied"] == 0
            assert {u["path"] for u in report["under_replicated"]} == set(paths)
            assert all("events.json" in u["reason"] for u in report["under_replicated"])
            assert all(servers.holders(p) == [0] for p in paths)
            one.put_file("s/run/events.json", b"[]")
            report = replicator.scan_once()
            assert report["copied"] == len(paths) + 1 and report["under_replicated_count"] == 0


def test_targets_are_the_servers_with_most_free_disk():
    free = {"a": 500, "b": 900, "c": None, "d": 100}
    assert choose_targets(300, 2, ["a", "b", "c", "d"], free, margin=50) == ["b", "a"]
    assert free == {"a": 200, "b": 600, "c": None, "d": 100}
    # a server that does not report its disk is used after the ones that do; too full ones never
    assert choose_targets(300, 3, ["a", "c", "d"], free, margin=50) == ["c"]
    assert choose_targets(10, 1, [], free) == []


def test_three_copies(servers):
    with servers.client([servers.urls[0]]) as one:
        one.put_file("big/a.bin", b"x" * 1000)
    with servers.client() as client:
        statuses = {s["URL"]: s["Disk"]["free"] for s in client.get_status()}
        report = Replicator(client, copies=3, quiet_s=0).scan_once()
    assert report["copied"] == 2 and servers.holders("big/a.bin") == [0, 1, 2]
    assert set(report["servers"]) == set(statuses)


def test_h5r_being_appended_is_not_copied_until_quiet(servers):
    records = np.zeros(10, dtype=[("x", "f4"), ("y", "f4"), ("t", "i4")])
    uri = f"pyme-cluster://{FILTER}/__aggregate_h5r/res/run.h5r/FitResults"
    with servers.client([servers.urls[0]]) as writer, servers.client() as client:
        replicator = Replicator(client, copies=2, quiet_s=2.0)
        deadline = time.monotonic() + 3.0
        scans = 0
        while time.monotonic() < deadline:
            writer.file_results(uri, records)
            report = replicator.scan_once()
            scans += 1
            assert report["copied"] == 0
            assert servers.holders("res/run.h5r") == [0]
            [waiting] = [u for u in report["under_replicated"] if u["path"] == "res/run.h5r"]
            # open for append (listed in __status once sampled) or changed too recently
            assert "appending" in waiting["reason"] or "quiet" in waiting["reason"]
            time.sleep(0.3)
        assert scans >= 3
        servers.servers[0].h5r.close()  # the server closes idle results files (after 20 s)
        deadline = time.monotonic() + 10.0
        while servers.holders("res/run.h5r") == [0]:
            assert time.monotonic() < deadline, "the quiet h5r file was never copied"
            time.sleep(0.5)
            replicator.scan_once()
        assert servers.holders("res/run.h5r")[0] == 0 and len(servers.holders("res/run.h5r")) == 2
        held = servers.holders("res/run.h5r")
        a, b = ((servers.roots[i] / "res/run.h5r").read_bytes() for i in held)
        assert a == b


def test_unreachable_server_is_left_out_and_its_files_are_copied_from_survivors(servers):
    with servers.client([servers.urls[1]]) as one:
        one.put_file("d/f.bin", b"abc")
    with servers.client([servers.urls[2]]) as other:
        other.put_file("d/f.bin", b"abc")  # already two copies (1 and 2)
    servers.stop(2)
    with servers.client() as client:
        report = Replicator(client, copies=2, quiet_s=0).scan_once()
    assert report["servers"][servers.urls[2]]["responsive"] is False
    assert report["copied"] == 1 and servers.holders("d/f.bin") == [0, 1, 2]


def test_run_loop_stops_when_told(servers):
    with servers.client() as client:
        replicator = Replicator(client, copies=2, quiet_s=0)
        stop = threading.Event()
        thread = threading.Thread(target=replicator.run, args=(0.1, stop))
        thread.start()
        deadline = time.monotonic() + 5
        while replicator.status()["scans"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and replicator.status()["scans"] >= 2
