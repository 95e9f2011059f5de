"""Reading spooled series back: from the cluster while written, from disk, and the error cases."""
import json

import numpy as np
import pytest
import requests

from pyme_desk.cluster import ClusterClient
from pyme_desk.formats import pzf
from pyme_desk.formats.series import SeriesError, SeriesNotFoundError, open_series
from pyme_desk.spool import Spooler
from pyme_desk.storage.server import DataServer
from tests.helpers import wait_for

FILTER = "seriestest"


@pytest.fixture
def server(data_root):
    with DataServer(data_root, server_filter=FILTER) as srv:
        yield srv


@pytest.fixture
def client(server):
    with ClusterClient([server.url], server_filter=FILTER, token="", listing_cache_s=0.0) as c:
        yield c


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1000, (16, 12)).astype(np.uint16) for _ in range(n)]




def test_a_series_reads_back_while_it_is_being_written(server, client):
    data = frames(20)
    sp = Spooler("live/s1", {"Camera.ADOffset": 7}, servers=[server.url], server_filter=FILTER, token="",
                 chunk_size=5)
    sp.start()
    for f in data[:8]:
        sp.put_frame(f)
    wait_for(lambda: sp.stats().frames_sent == 8)
    series = open_series(f"pyme-cluster://{FILTER}/live/s1", client, refresh_interval=60)
    assert len(series) == 8 and not series.is_complete and series.events == []
    assert series.metadata["Camera.ADOffset"] == 7 and "EndTime" not in series.metadata
    np.testing.assert_array_equal(series[-1], data[7])
    with pytest.raises(IndexError, match="still being written"):
        series[8]
    for f in data[8:]:
        sp.put_frame(f)
    sp.finish(final_metadata={"Sample.Notes": "done"})
    assert len(series) == 8  # no refresh yet: refresh_interval is long
    np.testing.assert_array_equal(series[15], data[15])  # indexing past the end looks again
    assert series.refresh() == 20 and series.is_complete and len(series) == 20
    assert series.metadata["Sample.Notes"] == "done" and "EndTime" in series.metadata
    assert series.events[0][:2] == ("StartAq", "0")
    np.testing.assert_array_equal(series[::5], np.stack(data[::5]))
    assert [f.shape for f in series][:2] == [(16, 12), (16, 12)]
    with pytest.raises(IndexError):
        series[20]
    with pytest.raises(IndexError):
        series[-21]


def test_missing_series_and_missing_frames_are_clear(server, client):
    with pytest.raises(SeriesNotFoundError, match="no series"):
        open_series("nowhere/s", client)
    client.put_file("plain/readme.txt", b"hello")
    with pytest.raises(SeriesError, match="no metadata.json"):
        open_series("plain", client)
    # a frame the listing shows but that vanished from the disk
    client.put_file("gap/metadata.json", b"{}")
    client.put_file("gap/frame00000.pzf", pzf.encode(frames(1)[0]))
    series = open_series("gap", client)
    assert len(series) == 1
    (server.root.path / "gap/frame00000.pzf").unlink()
    with pytest.raises(SeriesNotFoundError, match="frame00000.pzf"):
        series[0]


def test_corrupt_frames_raise_pzf_errors_naming_the_frame(server, client):
    client.put_file("bad/metadata.json", b"{}")
    good = pzf.encode(frames(1)[0])
    client.put_file("bad/frame00000.pzf", good)
    client.put_file("bad/frame00001.pzf", good[:70])
    client.put_file("bad/events.json", b"not json")
    series = open_series("bad", client)
    assert series.is_complete and len(series) == 2
    series[0]
    with pytest.raises(pzf.PZFError, match="frame00001.pzf"):
        series[1]
    with pytest.raises(SeriesError, match="events.json is not valid JSON"):
        series.events


def test_gaps_end_the_available_frames(server, client):
    client.put_file("holes/metadata.json", b"{}")
    for i in (0, 1, 3):
        client.put_file(f"holes/frame{i:05d}.pzf", pzf.encode(frames(1, seed=i)[0]))
    assert len(open_series("holes", client)) == 2


def test_a_growing_series_on_two_servers_is_counted_from_new_frames_only(tmp_path):
    blobs = [pzf.encode(f) for f in frames(9)]
    with DataServer(tmp_path / "a", server_filter=FILTER) as a, \
            DataServer(tmp_path / "b", server_filter=FILTER) as b, \
            ClusterClient([a.url, b.url], server_filter=FILTER, token="", listing_cache_s=0.0) as c:
        def put(server, name, data):
            assert requests.put(f"{server.url}two/s/{name}", data=data, timeout=5).status_code == 200

        put(a, "metadata.json", b"{}")
        for i in (0, 1, 4, 5):  # server b's chunk (2, 3) has not arrived yet
            put(a if i // 2 % 2 == 0 else b, f"frame{i:05d}.pzf", blobs[i])
        series = open_series("two/s", client=c, refresh_interval=float("inf"))
        assert len(series) == 2
        assert set(c.list_new_frames("two/s", 2)) == {"metadata.json", "frame00004.pzf", "frame00005.pzf"}
        for i in (2, 3, 6, 7):
            put(b if i // 2 % 2 else a, f"frame{i:05d}.pzf", blobs[i])
        assert series.refresh() == 8 and not series.is_complete
        put(b, "final_metadata.json", b'{"EndTime": 2}')
        put(a, "events.json", b"[]")
        assert series.refresh() == 8 and series.is_complete
        assert series.metadata == {"EndTime": 2}
        assert (series[7] == frames(9)[7]).all() and (series[2] == frames(9)[2]).all()


def test_local_folders_and_h5_files_open_without_a_server(data_root, tmp_path):
    data = frames(6)
    with DataServer(data_root, server_filter=FILTER) as server:  # stopped: it closes the .h5 file
        for mode in (False, True):
            with Spooler(f"local/s_{int(mode)}", {}, servers=[server.url], server_filter=FILTER, token="",
                         aggregate_h5=mode) as sp:
                for f in data:
                    sp.put_frame(f)
    folder = open_series(server.root.path / "local/s_0")
    assert folder.is_complete and len(folder) == 6
    np.testing.assert_array_equal(folder[5], data[5])
    packed = open_series(str(server.root.path / "local/s_1.h5"))
    with packed:
        assert packed.is_complete and len(packed) == 6
        np.testing.assert_array_equal(packed[2], data[2])
        assert json.loads(json.dumps(packed.metadata))["SizeT"] == -1
    with pytest.raises(SeriesNotFoundError):
        open_series(tmp_path / "absent")
