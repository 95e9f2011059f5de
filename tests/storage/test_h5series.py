"""Series packed into one .h5 file: parts in, the same parts out, PYME layout on disk."""
import json

import numpy as np
import pytest
import tables

from tests.storage.conftest import status_of
from pyme_desk.storage.h5series import H5SeriesStore, frame_name


def pzf_blob(frame: int, payload_len: int = 40) -> bytes:
    """A PZF-shaped blob: v3 header with the frame number, payload ending in zero bytes."""
    header = bytearray(64)
    header[0:3] = b"BD\x03"
    header[16:20] = frame.to_bytes(4, "little")
    payload = bytes((frame + i) % 251 + 1 for i in range(payload_len)) + b"\x00\x00"
    return bytes(header) + payload


@pytest.fixture
def store():
    store = H5SeriesStore(flush_interval=0.05, keep_open=5.0)
    yield store
    store.close()


@pytest.fixture
def series(data_root):
    return data_root / "user" / "2024_1_1" / "cells_00.h5"


def test_out_of_order_frames_read_back_by_number(store, series):
    store.append(series, "metadata.json", json.dumps({"Camera.ADOffset": 100}).encode())
    order = [3, 1, 0, 100000, 2]
    for frame in order:
        store.append(series, frame_name(frame), pzf_blob(frame))
    for frame in order:
        content_type, body = store.read(series, frame_name(frame))
        assert content_type == "application/octet-stream"
        assert body == pzf_blob(frame)
    assert frame_name(100000) == "frame100000.pzf"


def test_listing_and_completion(store, series):
    store.append(series, "metadata.json", b'{"imageID": 7}')
    store.append(series, "frame00001.pzf", pzf_blob(1))
    store.append(series, "frame00000.pzf", pzf_blob(0))
    assert store.listing(series) == {"metadata.json": [0, 0], "frame00000.pzf": [0, 0],
                                     "frame00001.pzf": [0, 0]}
    assert not store.is_complete(series)
    assert status_of(store.read, series, "events.json") == 404
    store.append(series, "events.json", b'[["StartAq", "0", 1.5], ["StopAq", "2", 2.5]]')
    assert store.is_complete(series)
    assert "events.json" in store.listing(series)
    assert json.loads(store.read(series, "events.json")[1]) == [
        ["StartAq", "0", 1.5], ["StopAq", "2", 2.5]]


def test_metadata_merges_from_both_part_names(store, series):
    store.append(series, "metadata.json", b'{"Camera.ADOffset": 100, "voxelsize.x": 0.1}')
    store.append(series, "MetaData", b'{"Camera.ADOffset": 99, "EndTime": 12.5}')
    content_type, body = store.read(series, "metadata.json")
    assert content_type == "application/json"
    assert json.loads(body) == {"Camera.ADOffset": 99, "voxelsize.x": 0.1, "EndTime": 12.5}


def test_file_layout_after_close(store, series):
    store.append(series, "metadata.json", b'{"Camera.ADOffset": 100}')
    for frame in (1, 0):
        store.append(series, frame_name(frame), pzf_blob(frame))
    store.append(series, "events.json", b"[]")
    store.close()
    assert not store.is_open(series)
    with tables.open_file(str(series), "r") as h5:
        assert h5.root.MetaData.Camera._v_attrs.ADOffset == 100
        assert h5.root.PZFImageData.nrows == 2
        assert h5.root.PZFImageData[0].tobytes() == pzf_blob(1)
        assert h5.root.PZFFrameNumbers.read().tolist() == [1, 0]
        assert h5.root.Events.nrows == 0
    assert store.read(series, "frame00001.pzf")[1] == pzf_blob(1)  # reopened after close


def test_reads_pyme_files_without_frame_numbers(store, data_root):
    path = data_root / "pyme_written.h5"
    with tables.open_file(str(path), "w") as h5:
        blobs = h5.create_vlarray("/", "PZFImageData", atom=tables.UInt8Atom())
        for frame in range(3):
            blobs.append(np.frombuffer(pzf_blob(frame), np.uint8))
    assert list(store.listing(path)) == ["metadata.json", "frame00000.pzf", "frame00001.pzf",
                                         "frame00002.pzf"]
    assert store.read(path, "frame00002.pzf")[1] == pzf_blob(2)
    assert json.loads(store.read(path, "metadata.json")[1]) == {}
    assert status_of(store.append, path, "frame00003.pzf", pzf_blob(3)) == 400


def test_duplicate_frame_is_refused(store, series):
    store.append(series, "frame00004.pzf", pzf_blob(4))
    assert status_of(store.append, series, "frame00004.pzf", pzf_blob(5)) == 405
    assert store.read(series, "frame00004.pzf")[1] == pzf_blob(4)


@pytest.mark.parametrize("part, body", [
    ("frame00001.pzf", b"not a pzf frame at all, though it is long enough to be one"),
    ("frame00001.pzf", b"BD\x03"),
    ("frame1.pzf", pzf_blob(1)),
    ("image.tif", b"II*\x00"),
    ("metadata.json", b"{broken"),
    ("metadata.json", b"[1, 2]"),
    ("events.json", b'{"StartAq": 1}'),
    ("events.json", b'[["StartAq", "0"]]'),
])
def test_bad_parts_are_refused(store, series, part, body):
    assert status_of(store.append, series, part, body) == 400


def test_missing_things_are_404(store, series):
    assert status_of(store.listing, series) == 404
    assert status_of(store.read, series, "metadata.json") == 404
    assert not store.is_complete(series)
    store.append(series, "frame00000.pzf", pzf_blob(0))
    assert status_of(store.read, series, "frame00001.pzf") == 404
    assert status_of(store.read, series, "frame.pzf") == 404
    assert status_of(store.read, series, "final_metadata.json") == 404
