"""ClusterClient against three real data servers (protocol.md §3)."""
import http.server
import io
import json
import os
import threading
import time

import numpy as np
import pytest
import requests

from pyme_desk.cluster import (ClusterClient, ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                               InsufficientSpaceError, InvalidNameError, PutFilesError, ServerError)
from pyme_desk.cluster.listing import Entry

from .conftest import start_cluster


def put_direct(url: str, path: str, data: bytes = b"x") -> None:
    """Store a file on one particular server, bypassing the client."""
    assert requests.put(url + path, data=data, timeout=5).status_code == 200


def test_puts_spread_across_servers_least_recently_used(cluster, client):
    for i in range(6):
        client.put_file(f"spread/f{i}.txt", b"data %d" % i)
    counts = [len(list((root / "spread").glob("*.txt"))) if (root / "spread").exists() else 0
              for root in cluster.roots]
    assert counts == [2, 2, 2]
    assert [cluster.holders(f"spread/f{i}.txt") for i in range(3)] == [[0], [1], [2]]


def test_listings_merge_directories_across_servers(cluster, client):
    put_direct(cluster.urls[0], "day/series/metadata.json", b"{}")
    put_direct(cluster.urls[1], "day/series/events.json", b"[]")
    put_direct(cluster.urls[1], "day/series/frame00000.pzf", b"p" * 10)
    put_direct(cluster.urls[2], "day/plain/a.txt")
    put_direct(cluster.urls[2], "day/series/frame00001.pzf", b"p" * 20)

    entries = client.list_entries("day")
    assert list(entries) == ["plain/", "series/"]
    assert entries["series/"] == Entry(1 | 2 | 4, 1 + 2 + 1)  # flags OR-ed, counts summed
    assert entries["plain/"] == Entry(1, 1)
    assert client.listdir("day/series") == ["events.json", "frame00000.pzf", "frame00001.pzf",
                                            "metadata.json"]
    stat = client.stat("day/series")
    assert stat.is_dir and stat.is_series and stat.is_complete
    assert client.stat("day/series/frame00001.pzf").size == 20
    assert client.isdir("day/series") and not client.isdir("day/series/events.json")
    assert client.exists("day/series/events.json") and not client.exists("day/nothing")
    assert client.listdir("no/such/dir") == []
    assert list(client.walk("day")) == [
        ("day", ["plain", "series"], []), ("day/plain", [], ["a.txt"]),
        ("day/series", [], ["events.json", "frame00000.pzf", "frame00001.pzf", "metadata.json"])]


def test_new_frames_of_a_series_spread_over_servers(cluster, client):
    put_direct(cluster.urls[0], "day/grow/metadata.json", b"{}")
    for i in range(12):  # chunks of 2 frames per server, as the spooler spreads them
        put_direct(cluster.urls[(i // 2) % 3], f"day/grow/frame{i:05d}.pzf", b"p" * (i + 1))
    fresh = client.list_new_frames("day/grow", 9)
    assert list(fresh) == ["frame00009.pzf", "frame00010.pzf", "frame00011.pzf", "metadata.json"]
    assert fresh["frame00010.pzf"] == Entry(0, 11)
    assert list(client.list_new_frames("day/grow", 0)) == client.listdir("day/grow")
    assert client.list_new_frames("day/nothing", 3) == {}


def test_new_frames_from_a_server_that_ignores_first_frame(cluster):
    """PYME's data servers do not know ``?first_frame=`` and send the whole listing: the
    client leaves the older frames out itself."""
    whole = {"metadata.json": [0, 2], **{f"frame{i:05d}.pzf": [0, 5] for i in range(6)}}
    queries = []

    class PlainListing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            queries.append(self.path)
            body = json.dumps(whole).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainListing) as plain:
        thread = threading.Thread(target=plain.serve_forever, daemon=True)
        thread.start()
        try:
            put_direct(cluster.urls[1], "day/grow/frame00006.pzf")
            url = f"http://127.0.0.1:{plain.server_address[1]}/"
            with ClusterClient([url, cluster.urls[1]], server_filter="test", token="") as c:
                assert list(c.list_new_frames("day/grow", 4)) == [
                    "frame00004.pzf", "frame00005.pzf", "frame00006.pzf", "metadata.json"]
        finally:
            plain.shutdown()
    assert queries == ["/day/grow/?first_frame=4"]


def test_frames_are_located_from_short_listings_and_remembered_ahead(cluster):
    """A worker reading frame i lists only the frames from i on; the frames after it in that
    answer are located without another listing."""
    put_direct(cluster.urls[0], "live/s/metadata.json", b"{}")
    for i in range(40):
        put_direct(cluster.urls[(i // 10) % 3], f"live/s/frame{i:05d}.pzf", b"%d" % i)
    seen = []
    with cluster.client(listing_cache_s=0.0) as c:
        original = c._transport.get

        def counting_get(url, **kw):
            seen.append((url, kw.get("params")))
            return original(url, **kw)

        c._transport.get = counting_get
        assert c.get_file("live/s/frame00025.pzf") == b"25"
        listings = [(u, p) for u, p in seen if u.endswith("/live/s/")]
        assert len(listings) == 3 and all(p == {"first_frame": "25"} for _, p in listings)
        seen.clear()
        for i in range(26, 40):  # located by the first answer: no listing at all
            assert c.get_file(f"live/s/frame{i:05d}.pzf") == b"%d" % i
        assert [u for u, _ in seen if u.endswith("/")] == []
        put_direct(cluster.urls[1], "live/s/frame00040.pzf", b"40")  # arrives later: listed again
        assert c.get_file("live/s/frame00040.pzf") == b"40"
        assert c.locate_file("live/s/frame00041.pzf") == []


def test_expired_listings_are_dropped_not_kept(cluster):
    """A listing too old to be served again must not stay in memory (a long series would)."""
    put_direct(cluster.urls[0], "big/a.txt")
    with cluster.client(listing_cache_s=0.2) as c:
        assert c.listdir("big") == ["a.txt"]
        assert {d for _, d in c._listings} == {"big"}
        time.sleep(0.3)
        c.listdir("")
        assert {d for _, d in c._listings} == {""}


def test_get_finds_the_file_wherever_it_is(cluster, client):
    put_direct(cluster.urls[2], "where/is/it.bin", b"found me")
    assert client.get_file("where/is/it.bin") == b"found me"
    assert client.get_file("pyme-cluster://test/where/is/it.bin") == b"found me"
    [(url, latency)] = client.locate_file("where/is/it.bin")
    assert url == cluster.urls[2] + "where/is/it.bin" and latency >= 0
    with pytest.raises(ClusterFileNotFoundError, match="where/is/not.bin"):
        client.get_file("where/is/not.bin")
    with pytest.raises(InvalidNameError, match="'other'"):
        client.get_file("pyme-cluster://other/where/is/it.bin")


def test_we_read_our_own_writes_through_a_long_listing_cache(cluster):
    with cluster.client(listing_cache_s=60.0) as client:
        assert client.listdir("own") == []
        client.put_file("own/a.txt", b"abc")
        assert client.listdir("own") == ["a.txt"]
        assert client.exists("own/a.txt") and client.stat("own/a.txt").size == 3
        assert client.listdir("") == ["own/"]
        assert client.get_file("own/a.txt") == b"abc"


def test_put_of_an_existing_name_raises_clearly(cluster, client):
    put_direct(cluster.urls[2], "once/y.txt")
    client.put_file("once/x.txt", b"first")
    with pytest.raises(ClusterFileExistsError, match="once/x.txt"):
        client.put_file("once/x.txt", b"second")
    # Held by another server than the one the round robin picks next: still refused.
    with pytest.raises(FileExistsError, match="write-once"):
        client.put_file("once/y.txt", b"second")
    assert [cluster.holders("once/x.txt"), cluster.holders("once/y.txt")] == [[0], [2]]
    assert (cluster.roots[0] / "once/x.txt").read_bytes() == b"first"


def test_a_server_405_becomes_file_exists(cluster):
    with cluster.client(listing_cache_s=60.0) as client:
        assert not client.exists("race/z.txt")  # caches "absent" on every server
        for url in cluster.urls:  # someone else writes the name everywhere meanwhile
            put_direct(url, "race/z.txt", b"theirs")
        with pytest.raises(ClusterFileExistsError, match="already exists on http://127.0.0.1"):
            client.put_file("race/z.txt", b"mine")


def test_put_rejects_bad_names_before_sending(cluster, client):
    with pytest.raises(InvalidNameError, match="not allowed"):
        client.put_file("bad name/x.txt", b"")
    assert not any((root / "bad name").exists() for root in cluster.roots)


def test_put_files_pipelines_100_files_to_one_server(cluster, client):
    files = [(f"bulk/frame{i:05d}.pzf", os.urandom(100 + i)) for i in range(100)]
    urls = client.put_files(files)
    assert len(urls) == 100
    assert all(cluster.holders(p) == [0] for p, _ in files)
    assert all(client.get_file(p) == d for p, d in files)
    assert client.listdir("bulk") == [p.split("/")[1] for p, _ in files]
    client.put_files([("bulk2/a", b"a"), ("bulk2/b", b"b")])
    assert cluster.holders("bulk2/a") == [1]  # next batch, next server


def test_put_files_reports_each_refusal_with_the_server_reason(cluster):
    with cluster.client(listing_cache_s=60.0) as client:
        assert client.listdir("pf") == []
        put_direct(cluster.urls[0], "pf/taken.txt", b"theirs")
        with pytest.raises(PutFilesError) as e:
            client.put_files([("pf/new1.txt", b"1"), ("pf/taken.txt", b"2"), ("pf/new2.txt", b"3")])
        assert list(e.value.failures) == ["pf/taken.txt"]
        assert "405" in str(e.value) and "already exists" in str(e.value)
        assert cluster.holders("pf/new1.txt") == [0] and cluster.holders("pf/new2.txt") == [0]
        assert (cluster.roots[0] / "pf/taken.txt").read_bytes() == b"theirs"


def test_put_files_refuses_names_already_on_the_cluster_before_sending(cluster, client):
    put_direct(cluster.urls[1], "pre/taken.txt")
    with pytest.raises(ClusterFileExistsError, match="pre/taken.txt"):
        client.put_files([("pre/new.txt", b"1"), ("pre/taken.txt", b"2")])
    assert cluster.holders("pre/new.txt") == []


def test_writes_move_on_when_a_server_dies(cluster):
    with cluster.client() as single, cluster.client() as bulk:
        for c in (single, bulk):
            assert all(s["Responsive"] for s in c.get_status())  # status cached as all-alive
        cluster.stop(0)  # the server the round robin picks first
        url = single.put_file("retry/one.txt", b"1")
        assert url.startswith(cluster.urls[1]) and cluster.holders("retry/one.txt") == [1]
        urls = bulk.put_files([("retry/a.txt", b"a"), ("retry/b.txt", b"b")])
        assert all(u.startswith(cluster.urls[1]) for u in urls)
        assert cluster.holders("retry/a.txt") == [1] and cluster.holders("retry/b.txt") == [1]


def test_glob_is_the_union_over_servers(cluster, client):
    put_direct(cluster.urls[0], "g/a/x.txt")
    put_direct(cluster.urls[1], "g/b/y.txt")
    put_direct(cluster.urls[2], "g/b/z.csv")
    put_direct(cluster.urls[2], "g/a/x.txt")  # a duplicate appears once
    assert client.glob("g/*/*.txt") == ["g/a/x.txt", "g/b/y.txt"]
    assert client.glob("nothing/*") == []


def test_status_of_every_server_and_an_unreachable_one(cluster, closed_port_url):
    with cluster.client() as client:
        status = client.get_status()
        assert [s["Responsive"] for s in status] == [True, True, True]
        assert [f"http://{s['IPAddress']}:{s['Port']}/" for s in status] == cluster.urls
        assert all(s["Disk"]["free"] > 0 and s["Cluster"] == "test" for s in status)
    with ClusterClient(cluster.urls + [closed_port_url], server_filter="test", token="") as client:
        started = time.monotonic()
        status = client.get_status()
        assert time.monotonic() - started < 1.0
        assert [s["Responsive"] for s in status] == [True, True, True, False]
        assert status[3]["URL"] == closed_port_url and "Disk" not in status[3]


def test_results_appended_to_h5r_read_back_as_npy(cluster, client):
    dtype = np.dtype([("tIndex", "<i4"), ("fitResults", [("x0", "<f4"), ("y0", "<f4")])])
    rows = np.zeros(5, dtype)
    rows["tIndex"] = np.arange(5)
    rows["fitResults"]["x0"] = np.linspace(0, 1, 5)
    uri = "pyme-cluster://test/__aggregate_h5r/res/series.h5r/FitResults"
    url = client.file_results(uri, rows[:3])
    client.file_results("pyme-cluster://test/__aggregate_h5r/res/series.h5r/MetaData", {"voxelsize.x": 0.1})
    assert client.file_results(uri, rows[3:]) == url  # every append goes to the one server
    holder = cluster.holders("res/series.h5r")
    assert len(holder) == 1 and url.startswith(cluster.urls[holder[0]])

    back = np.load(io.BytesIO(client.get_file("res/series.h5r/FitResults.npy")), allow_pickle=False)
    assert np.array_equal(back["tIndex"], rows["tIndex"])
    assert np.allclose(back["fitResults"]["x0"], rows["fitResults"]["x0"])


def test_aggregate_url_uses_the_server_already_holding_the_file(cluster, client):
    put_direct(cluster.urls[2], "__aggregate_txt/logs/run.log", b"one\n")
    url = client.aggregate_url("pyme-cluster://test/__aggregate_txt/logs/run.log")
    assert url == cluster.urls[2] + "__aggregate_txt/logs/run.log"
    client.file_results("pyme-cluster://test/__aggregate_txt/logs/run.log", "two\n")
    assert (cluster.roots[2] / "logs/run.log").read_bytes() == b"one\ntwo\n"
    put_direct(cluster.urls[0], "__aggregate_txt/logs/dup.log", b"a\n")
    put_direct(cluster.urls[1], "__aggregate_txt/logs/dup.log", b"b\n")
    with pytest.raises(ClusterError, match="exists on 2 servers"):
        client.aggregate_url("pyme-cluster://test/__aggregate_txt/logs/dup.log")


def test_plain_results_are_write_once_files(cluster, client):
    client.file_results("pyme-cluster://test/res/table.csv", "a,b\n1,2\n")
    assert client.get_file("res/table.csv") == b"a,b\n1,2\n"
    with pytest.raises(ClusterFileExistsError):
        client.file_results("pyme-cluster://test/res/table.csv", "again")


def test_mirror_copies_to_a_server_lacking_the_file(cluster, client):
    put_direct(cluster.urls[1], "m/keep.bin", b"precious")
    url = client.mirror_file("m/keep.bin")
    assert not url.startswith(cluster.urls[1])
    assert len(cluster.holders("m/keep.bin")) == 2
    assert len(client.locate_file("m/keep.bin")) == 2


def test_no_server_has_room_so_nothing_is_written(cluster):
    with cluster.client() as probe:
        free = max(s["Disk"]["free"] for s in probe.get_status())
    with cluster.client(disk_margin=free + 2**30) as client:
        with pytest.raises(InsufficientSpaceError, match="no data server has room"):
            client.put_file("full/x.bin", b"x" * 1000)
        with pytest.raises(InsufficientSpaceError):
            client.put_files([("full/y.bin", b"y")])
    assert all(cluster.holders(p) == [] for p in ("full/x.bin", "full/y.bin"))


def test_local_root_is_read_directly_and_confined(cluster, tmp_path):
    (cluster.roots[0] / "loc").mkdir()
    (cluster.roots[0] / "loc/here.txt").write_bytes(b"local")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    try:
        os.symlink(outside, cluster.roots[0] / "loc/link.txt")
    except OSError:
        pytest.skip("cannot create symlinks here")
    with cluster.client(local_root=cluster.roots[0]) as client:
        cluster.stop()
        assert client.get_file("loc/here.txt") == b"local"  # no server is running
        with pytest.raises(ClusterError):
            client.get_file("loc/link.txt")  # points outside the root: not read locally


def test_a_token_is_sent_on_writes(tmp_path):
    secured = start_cluster(tmp_path, n=1, token="s3cret")
    try:
        with secured.client() as anonymous:
            with pytest.raises(ServerError, match="401.*token"):
                anonymous.put_file("t/x.txt", b"x")
            assert anonymous.listdir("") == []  # reads need no token
        with secured.client(token="s3cret") as client:
            client.put_file("t/x.txt", b"x")
            client.put_files([("t/y.txt", b"y")])
            client.file_results("pyme-cluster://test/__aggregate_txt/t/log.txt", "ok\n")
            assert client.listdir("t") == ["log.txt", "x.txt", "y.txt"]
    finally:
        secured.stop()
