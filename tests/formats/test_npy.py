""".npy bytes read safely from many threads at once."""
import io
import threading

import numpy as np
import pytest

from pyme_desk.formats.npy import load_npy

FIT = np.dtype([("tIndex", "<i4"), ("fitResults", [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4")]),
                ("resultCode", "<i4")])


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def test_structured_rows_round_trip_and_pickles_are_refused():
    rows = np.zeros(4, FIT)
    rows["fitResults"]["x0"] = [1, 2, 3, 4]
    back = load_npy(npy(rows))
    assert back.dtype == FIT and (back == rows).all()
    with pytest.raises(ValueError):
        load_npy(npy(np.array([{"a": 1}], dtype=object)))
    with pytest.raises(ValueError):
        load_npy(b"not npy at all")


def test_many_threads_read_headers_at_once():
    data = [npy(np.full(3, i, FIT)) for i in range(8)]
    failures = []

    def read(i):
        try:
            for _ in range(300):
                assert load_npy(data[i])["tIndex"][0] == i
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            failures.append(repr(e))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
