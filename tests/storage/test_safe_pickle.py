"""The restricted unpickler and the aggregate-body decoder."""
import io
import json
import os
import pickle
import sys

import numpy as np
import pytest

from pyme_desk.web.errors import HTTPError
from pyme_desk.storage.safe_pickle import decode_records, loads_array, loads_restricted

FIT_DTYPE = np.dtype([("tIndex", "<i4"),
                      ("fitResults", [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4")]),
                      ("fitError", [("x0", "<f4")]),
                      ("resultCode", "<i4")])


def fit_rows(n=5):
    rows = np.zeros(n, FIT_DTYPE)
    rows["tIndex"] = np.arange(n)
    rows["fitResults"]["x0"] = np.linspace(0, 1, n)
    rows["fitError"]["x0"] = 0.5
    return rows


def numpy1_style(data: bytes) -> bytes:
    """Rewrite a numpy-2 pickle to name ``numpy.core.*`` as numpy 1.x writes it."""
    out = data
    for new in (b"numpy._core.multiarray", b"numpy._core.numeric"):
        old = new.replace(b"._core", b".core")
        out = out.replace(b"c" + new + b"\n", b"c" + old + b"\n")  # protocol <= 3 GLOBAL
        out = out.replace(bytes([0x8C, len(new)]) + new, bytes([0x8C, len(old)]) + old)
    if out[2:3] == b"\x95":  # protocol >= 4: one FRAME whose length shrank
        frame = int.from_bytes(out[3:11], "little") - (len(data) - len(out))
        out = out[:3] + frame.to_bytes(8, "little") + out[11:]
    return out


class RunsCommand:
    """Pickles as a call to os.system, the classic pickle exploit."""

    def __init__(self, marker):
        self.command = f'{sys.executable} -c "open(r\'{marker}\', \'w\')"'

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_structured_array_round_trips(protocol):
    rows = fit_rows()
    loaded = loads_array(pickle.dumps(rows, protocol=protocol))
    assert loaded.dtype == FIT_DTYPE
    np.testing.assert_array_equal(loaded, rows)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy1_pickles_load(protocol):
    data = numpy1_style(pickle.dumps(fit_rows(), protocol=protocol))
    assert b"numpy.core." in data and b"numpy._core" not in data
    np.testing.assert_array_equal(loads_array(data), fit_rows())


def test_pickled_recarray_comes_back_as_plain_array():
    events = np.rec.fromarrays([np.array([b"StartAq"]), np.array([b"0"]), np.array([1.5])],
                               names="EventName,EventDescr,Time")
    loaded = loads_array(pickle.dumps(events, protocol=2))
    assert type(loaded) is np.ndarray and loaded.dtype.type is np.void
    assert loaded["EventName"][0] == b"StartAq" and loaded["Time"][0] == 1.5


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_code_in_a_pickle_is_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / "ran"
    payload = pickle.dumps(RunsCommand(marker), protocol=protocol)
    with pytest.raises(HTTPError) as err:
        loads_array(payload)
    assert err.value.status == 400
    assert "only numpy arrays may be pickled" in err.value.reason
    assert not marker.exists()
    with pytest.raises(HTTPError):
        decode_records(payload)
    assert not marker.exists()


def test_codec_other_than_latin1_is_refused():
    payload = pickle.dumps(fit_rows(), protocol=2).replace(b"latin1", b"rot_13")
    with pytest.raises(HTTPError) as err:
        loads_array(payload)
    assert err.value.status == 400


@pytest.mark.parametrize("value", [[1, 2, 3], np.array([1, "a"], dtype=object), {"a": 1}])
def test_non_arrays_and_object_arrays_are_refused(value):
    with pytest.raises(HTTPError) as err:
        loads_array(pickle.dumps(value, protocol=2))
    assert err.value.status == 400


def test_truncated_pickle_is_refused():
    with pytest.raises(HTTPError) as err:
        loads_array(pickle.dumps(fit_rows(), protocol=2)[:-20])
    assert err.value.status == 400


def test_restricted_loads_plain_data_and_arrays_only(tmp_path):
    value = [1, "a", None, {"x": 2.5}]
    assert loads_restricted(pickle.dumps(value, protocol=0)) == value
    np.testing.assert_array_equal(loads_restricted(pickle.dumps(fit_rows())), fit_rows())
    with pytest.raises(pickle.UnpicklingError):
        loads_restricted(pickle.dumps(RunsCommand(tmp_path / "ran"), protocol=0))
    with pytest.raises(pickle.UnpicklingError):
        loads_restricted(b"\x80\x02garbage")
    assert not (tmp_path / "ran").exists()


def test_npy_body_decodes():
    buffer = io.BytesIO()
    np.save(buffer, fit_rows())
    np.testing.assert_array_equal(decode_records(buffer.getvalue()), fit_rows())


def test_npy_body_with_objects_is_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(HTTPError) as err:
        decode_records(buffer.getvalue())
    assert err.value.status == 400


def test_json_records_with_nested_objects():
    body = json.dumps([{"tIndex": 1, "fitResults": {"x0": 1.5}, "name": "a", "ok": True},
                       {"tIndex": 2, "fitResults": {"x0": None}, "name": "bé", "ok": False}])
    rows = decode_records(body.encode())
    assert rows.dtype == np.dtype([("tIndex", "<i8"), ("fitResults", [("x0", "<f8")]),
                                   ("name", "S3"), ("ok", "?")])
    assert rows["tIndex"].tolist() == [1, 2]
    assert rows["fitResults"]["x0"][0] == 1.5 and np.isnan(rows["fitResults"]["x0"][1])
    assert rows["name"].tolist() == [b"a", "bé".encode()]
    assert rows["ok"].tolist() == [True, False]


def test_pandas_column_json_with_dotted_names_in_label_order():
    body = {"tIndex": {"1": 7, "0": 6, "10": 8},
            "fitResults.x0": {"0": 0.5, "1": 1.5, "10": 2.5},
            "fitResults.y0": {"0": 1, "1": 2.0, "10": 3}}
    rows = decode_records(json.dumps(body).encode())
    assert rows["tIndex"].tolist() == [6, 7, 8]
    assert rows["fitResults"]["x0"].tolist() == [0.5, 1.5, 2.5]
    assert rows["fitResults"]["y0"].dtype == np.float64


def test_column_lists_json():
    rows = decode_records(b'{"a": [1, 2], "b": ["x", "y"]}')
    assert rows["a"].tolist() == [1, 2] and rows["b"].tolist() == [b"x", b"y"]


@pytest.mark.parametrize("body", [
    b"", b"garbage", b"{not json", b"[1, 2]", b'{"a": [1, "x"]}', b'{"a": [1], "b": [1, 2]}',
    b'{"a": [[1, 2]]}', b"{}", b'{"a": 1}', b'[{"a": 1, "a.b": 2}]',
])
def test_bad_bodies_are_refused(body):
    with pytest.raises(HTTPError) as err:
        decode_records(body)
    assert err.value.status == 400
