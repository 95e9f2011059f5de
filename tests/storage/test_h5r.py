"""The .h5r results store: appends, metadata, events, reads in every format, concurrency."""
import csv
import io
import json
import os
import pickle
import sys
import threading
import time

import numpy as np
import pytest
import tables

from pyme_desk.web.errors import HTTPError
from tests.storage.conftest import status_of
from pyme_desk.storage.h5r import H5RStore
from pyme_desk.storage.safe_pickle import loads_array

FIT_DTYPE = np.dtype([("tIndex", "<i4"),
                      ("fitResults", [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4")]),
                      ("fitError", [("x0", "<f4")]),
                      ("resultCode", "<i4")])


def fit_rows(n=50, frame=0):
    rows = np.zeros(n, FIT_DTYPE)
    rows["tIndex"] = frame
    rows["fitResults"]["x0"] = np.arange(n) + 0.25
    rows["fitResults"]["A"] = frame
    rows["fitError"]["x0"] = 0.5
    return rows


@pytest.fixture
def store():
    store = H5RStore(flush_interval=0.05, keep_open=5.0)
    yield store
    store.close()


@pytest.fixture
def results(data_root):
    return data_root / "user" / "analysis" / "series_00.h5r"


def test_append_then_read_pickle_sees_rows_at_once(store, results):
    store.append_records(results, "FitResults", fit_rows(3, frame=1))
    store.append_records(results, "FitResults", fit_rows(2, frame=2))
    assert store.is_open(results)
    content_type, body = store.read_part(results, "FitResults", {})
    assert content_type == "application/octet-stream"
    # protocol 2 naming numpy.core, which numpy 1.x (PYME) clients can import
    assert body.startswith(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n")
    rows = pickle.loads(body)
    assert rows.dtype == FIT_DTYPE
    assert rows["tIndex"].tolist() == [1, 1, 1, 2, 2]


def test_row_slice_and_npy(store, results):
    store.append_records(results, "FitResults", fit_rows(10))
    _, body = store.read_part(results, "FitResults.npy", {"from": "2", "to": "5"})
    rows = np.load(io.BytesIO(body), allow_pickle=False)
    assert rows["fitResults"]["x0"].tolist() == [2.25, 3.25, 4.25]
    _, body = store.read_part(results, "FitResults.npy", {"from": "8"})
    assert len(np.load(io.BytesIO(body))) == 2
    _, body = store.read_part(results, "FitResults.npy", {"from": "5", "to": "2"})
    assert len(np.load(io.BytesIO(body))) == 0


def test_json_is_pandas_column_oriented_with_dotted_columns(store, results):
    rows = fit_rows(3)
    rows["fitResults"]["y0"][1] = np.nan
    store.append_records(results, "FitResults", rows)
    content_type, body = store.read_part(results, "FitResults.json", {"from": "1"})
    assert content_type == "text/json"
    table = json.loads(body)
    assert list(table) == ["tIndex", "fitResults.A", "fitResults.x0", "fitResults.y0",
                           "fitError.x0", "resultCode"]
    assert table["fitResults.x0"] == {"0": 1.25, "1": 2.25}
    assert table["fitResults.y0"] == {"0": None, "1": 0.0}


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_csv(store, results, fmt):
    events = np.zeros(2, [("EventName", "S32"), ("EventDescr", "S256"), ("Time", "<f8")])
    events[0] = (b"StartAq", b"0", 1.5)
    events[1] = (b"Focus", "é".encode(), 2.0)
    store.append_records(results, "Events", events)
    content_type, body = store.read_part(results, f"Events.{fmt}", {})
    assert content_type == "text/csv"
    assert list(csv.reader(io.StringIO(body.decode()))) == [
        ["EventName", "EventDescr", "Time"], ["StartAq", "0", "1.5"], ["Focus", "é", "2.0"]]


def test_metadata_round_trip(store, results):
    metadata = {"Camera.ADOffset": 100, "Camera.ElectronsPerCount": 0.47, "voxelsize.x": 0.1,
                "Analysis.FitModule": "LatGaussFitFR", "Analysis.BGRange": [-10, 0],
                "Analysis.SNRThreshold": True, "Camera.DarkMapID": None, "imageID": 12,
                "Sample.Notes": "", "Multiview.Nested.Deep": "é."}
    store.append_metadata(results, metadata)
    store.append_metadata(results, {"Camera.ADOffset": 101, "EstimatedLaserOnFrameNo": 0})
    content_type, body = store.read_part(results, "Metadata", {})
    assert content_type == "text/json"
    assert json.loads(body) == {**metadata, "Camera.ADOffset": 101, "EstimatedLaserOnFrameNo": 0}
    assert json.loads(store.read_part(results, "Metadata.json", {})[1])["imageID"] == 12


def test_events_from_lists_and_records(store, results):
    store.append_events(results, [["StartAq", "0", 10.0], [b"Protocol", "x" * 300, 11]])
    records = np.zeros(1, [("EventName", "S10"), ("EventDescr", "S5"), ("Time", "<f8")])
    records[0] = (b"StopAq", b"99", 12.0)
    store.append_records(results, "Events", pickle.loads(pickle.dumps(records)))
    table = json.loads(store.read_part(results, "Events.json", {})[1])
    assert table["EventName"] == {"0": "StartAq", "1": "Protocol", "2": "StopAq"}
    assert len(table["EventDescr"]["1"]) == 256  # truncated to the S256 column
    assert table["Time"]["2"] == 12.0


def test_file_has_pyme_layout_after_close(store, results):
    store.append_metadata(results, {"Camera.ADOffset": 100, "Analysis.BGRange": [-10, 0]})
    store.append_records(results, "FitResults", fit_rows(50, frame=3))
    store.append_records(results, "DriftResults", fit_rows(4))
    store.append_events(results, [["StartAq", "0", 1.0]])
    store.close()
    assert not store.is_open(results)
    with tables.open_file(str(results), "r") as h5:
        fit = h5.root.FitResults
        assert isinstance(fit, tables.Table) and fit.nrows == 50
        assert fit.filters.complib == "zlib" and fit.filters.complevel == 5 and fit.filters.shuffle
        assert fit.col("fitResults")["x0"][1] == pytest.approx(1.25)
        assert "fitResults/x0" in fit.colpathnames
        assert h5.root.DriftResults.nrows == 4
        assert h5.root.MetaData.Camera._v_attrs.ADOffset == 100
        assert h5.root.MetaData.Analysis._v_attrs.BGRange == [-10, 0]
        events = h5.root.Events
        assert events.dtype == np.dtype([("EventName", "S32"), ("EventDescr", "S256"),
                                         ("Time", "<f8")])
        assert events[0]["EventName"] == b"StartAq"


def test_store_reopens_a_closed_file_and_keeps_appending(store, results):
    store.append_records(results, "FitResults", fit_rows(5))
    store.close()
    store.append_records(results, "FitResults", fit_rows(5))
    assert len(loads_array(store.read_part(results, "FitResults", {})[1])) == 10


def test_idle_files_are_flushed_and_closed(data_root):
    store = H5RStore(flush_interval=0.02, keep_open=0.1)
    path = data_root / "idle.h5r"
    try:
        store.append_records(path, "FitResults", fit_rows(7))
        deadline = time.monotonic() + 5
        while store.is_open(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not store.is_open(path)
        with tables.open_file(str(path), "r") as h5:  # no handle left open by the store
            assert h5.root.FitResults.nrows == 7
    finally:
        store.close()


def test_dtype_mismatch_is_refused(store, results):
    store.append_records(results, "FitResults", fit_rows(2))
    other = np.zeros(2, [("tIndex", "<i4"), ("x", "<f8")])
    with pytest.raises(HTTPError) as err:
        store.append_records(results, "FitResults", other)
    assert err.value.status == 400
    assert "do not match the columns of /FitResults" in err.value.reason
    assert "fitResults.x0" in err.value.reason


def test_same_columns_in_other_byte_order_are_accepted(store, results):
    store.append_records(results, "FitResults", fit_rows(2))
    store.append_records(results, "FitResults", fit_rows(3).astype(FIT_DTYPE.newbyteorder(">")))
    assert len(loads_array(store.read_part(results, "FitResults", {})[1])) == 5


@pytest.mark.parametrize("records", [
    np.arange(5.0), [1, 2], np.zeros((2, 2), FIT_DTYPE),
    np.zeros(2, [("name", "U4")]), np.zeros(2, [("o", "O")]), np.zeros(2, [("u", "U2", (2,))]),
    np.zeros(2, [("t", "M8[s]")]),
])
def test_bad_records_are_refused(store, results, records):
    assert status_of(store.append_records, results, "FitResults", records) == 400
    assert not results.exists()  # refused before any file is created


@pytest.mark.parametrize("table", ["MetaData", "Fit/Results", "../x", "", "1st"])
def test_bad_table_names_are_refused(store, results, table):
    assert status_of(store.append_records, results, table, fit_rows(1)) == 400


@pytest.mark.parametrize("metadata", [
    {"Camera.ADOffset": 1, "Camera..X": 1}, {"a/b": 1}, ["not", "a", "dict"], {"CLASS": "x"},
    {"Camera.TITLE": "x"},
])
def test_bad_metadata_is_refused(store, results, metadata):
    assert status_of(store.append_metadata, results, metadata) == 400
    assert not results.exists()  # nothing half-written


@pytest.mark.parametrize("events", [[["a", "b"]], [["a", "b", "soon"]], "StartAq",
                                    np.zeros(1, [("Time", "<f8")])])
def test_bad_events_are_refused(store, results, events):
    assert status_of(store.append_events, results, events) == 400
    assert not results.exists()


def test_read_errors(store, results, data_root):
    assert status_of(store.read_part, results, "FitResults", {}) == 404
    store.append_records(results, "FitResults", fit_rows(2))
    assert status_of(store.read_part, results, "DriftResults", {}) == 404
    assert status_of(store.read_part, results, "FitResults", {"from": "x"}) == 400
    assert status_of(store.read_part, results, "FitResults", {"to": "1.5"}) == 400
    assert status_of(store.read_part, results, "FitResults.xlsx", {}) == 400
    assert status_of(store.read_part, results, "Metadata.csv", {}) == 400
    not_hdf5 = data_root / "plain.h5r"
    not_hdf5.write_bytes(b"this is not HDF5")
    assert status_of(store.read_part, not_hdf5, "FitResults", {}) == 400
    assert status_of(store.append_records, not_hdf5, "FitResults", fit_rows(1)) == 400
    assert not_hdf5.read_bytes() == b"this is not HDF5"


def test_hostile_pickled_attributes_are_not_run(store, data_root, tmp_path):
    """PyTables unpickles attributes whenever it opens a node; uploaded files must not run code."""
    marker = tmp_path / "ran"
    evil = f"cos\nsystem\n(V{sys.executable} -c \"open(r'{marker}', 'w')\"\ntR.".encode()
    path = data_root / "hostile.h5r"
    with tables.open_file(str(path), "w") as h5:
        h5.create_group("/", "MetaData")._v_attrs.Trap = np.bytes_(evil)
        h5.create_table("/", "FitResults", obj=fit_rows(2))._v_attrs.Trap = np.bytes_(evil)
    metadata = json.loads(store.read_part(path, "Metadata", {})[1])
    assert metadata == {"Trap": evil.decode()}
    assert len(loads_array(store.read_part(path, "FitResults", {})[1])) == 2
    store.append_records(path, "FitResults", fit_rows(1))
    assert not marker.exists()


def test_concurrent_appends_keep_every_row(data_root):
    """8 threads x 200 appends of 50-row batches; prints the sustained append rate."""
    store = H5RStore()
    path = data_root / "concurrent.h5r"
    threads_n, appends, batch = 8, 200, 50
    errors = []

    def work(worker):
        try:
            for i in range(appends):
                store.append_records(path, "FitResults", fit_rows(batch, frame=worker * appends + i))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_n)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.perf_counter() - started
    try:
        assert not errors
        rows = loads_array(store.read_part(path, "FitResults", {})[1])
        assert len(rows) == threads_n * appends * batch
        counts = np.bincount(rows["tIndex"])
        assert counts.tolist() == [batch] * (threads_n * appends)
    finally:
        store.close()
    print(f"\nh5r append rate: {len(rows) / elapsed:,.0f} rows/s "
          f"({threads_n * appends / elapsed:,.0f} appends/s, {elapsed:.2f} s)", file=sys.stderr)
    assert os.path.getsize(path) > 0
