"""Serialising results by target name: npy, JSON, text, never pickle (protocol.md §3.4, §6.4)."""
import io
import json

import numpy as np
import pytest

from pyme_desk.cluster.results import serialise_results

FIT = np.dtype([("tIndex", "<i4"), ("x", "<f4"), ("y", "<f4")])


def rows(n=3):
    a = np.zeros(n, FIT)
    a["tIndex"] = np.arange(n)
    a["x"] = np.arange(n) * 1.5
    return a


def test_tables_go_as_npy_without_pickle():
    body = serialise_results("__aggregate_h5r/a/x.h5r/FitResults", rows())
    back = np.load(io.BytesIO(body), allow_pickle=False)
    assert back.dtype == FIT and np.array_equal(back, rows())


def test_metadata_goes_as_json():
    body = serialise_results("__aggregate_h5r/a/x.h5r/MetaData", {"Camera.ADOffset": np.float32(100)})
    assert json.loads(body) == {"Camera.ADOffset": 100.0}


def test_text_and_csv():
    assert serialise_results("logs/run.log", "line\n") == b"line\n"
    csv = serialise_results("a/table.csv", rows(2)).decode()
    assert csv.splitlines() == ["tIndex,x,y", "0,0.0,0.0", "1,1.5,0.0"]


def test_json_tables_are_column_oriented():
    body = json.loads(serialise_results("a/t.json", rows(2)))
    assert body["x"] == {"0": 0.0, "1": 1.5}


def test_bytes_pass_through():
    assert serialise_results("a/t.json", b"{}") == b"{}"


@pytest.mark.parametrize("path, data", [("a/x.bin", {1, 2}), ("a/x.txt", object()), ("a/t.json", object())])
def test_objects_that_would_need_pickle_are_refused(path, data):
    with pytest.raises(TypeError, match="never sends pickles"):
        serialise_results(path, data)


def test_whole_h5r_file_target_is_refused():
    with pytest.raises(TypeError, match="Table"):
        serialise_results("__aggregate_h5r/a/x.h5r", rows())
