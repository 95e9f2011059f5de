"""Turn results (arrays, metadata, text) into PUT bodies, chosen by the target name.

Follows clusterResults (protocol.md §3.4) with one deliberate change: we never send pickles.
Arrays go as ``.npy`` bytes (the data server accepts them on ``__aggregate_h5r`` tables, §6.2),
mappings and metadata as JSON, text as UTF-8.  By the last name component:

* ``.csv`` ``.txt`` ``.log`` ``.html`` -> text (a structured array becomes CSV with a header);
* ``.json`` -> JSON (a structured array becomes column-oriented ``{"col": {"0": v}}``);
* ``.npy`` or no recognised extension -> ``.npy`` for arrays, JSON for mappings;
* ``bytes`` are always sent as they are.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Mapping

import numpy as np

_TEXT_EXTENSIONS = (".csv", ".txt", ".log", ".html")


def serialise_results(path: str, data: Any) -> bytes:
    """The bytes to PUT at ``path`` for ``data``; TypeError names what is accepted."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    name = path.rstrip("/").rpartition("/")[2].lower()
    if name.endswith((".h5r", ".hdf")):
        raise TypeError(f"{path!r}: append rows to a table, <file>.h5r/<Table>, not to the file itself")
    if name.endswith(_TEXT_EXTENSIONS):
        return _text(path, data)
    if name.endswith(".json"):
        return _json(path, data)
    if isinstance(data, np.ndarray):
        return _npy(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    return _json(path, data)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _text(path: str, data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, np.ndarray) and data.dtype.names:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(data.dtype.names)
        writer.writerows(row.tolist() for row in data)
        return out.getvalue().encode("utf-8")
    raise _unsupported(path, data, "str, bytes or a structured numpy array")


def _json(path: str, data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if hasattr(data, "to_JSON"):  # PYME-style metadata objects
        return str(data.to_JSON()).encode("utf-8")
    if isinstance(data, np.ndarray) and data.dtype.names:
        data = {col: {str(i): v for i, v in enumerate(data[col].tolist())} for col in data.dtype.names}
    if not isinstance(data, (Mapping, list, tuple, np.ndarray, int, float, bool)) and data is not None:
        raise _unsupported(path, data, "bytes, str, a mapping, a list or a numpy array")
    return json.dumps(data, default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _unsupported(path: str, data: Any, accepted: str) -> TypeError:
    return TypeError(f"cannot send {type(data).__name__} to {path!r}: pass {accepted} "
                     f"(pyme-desk never sends pickles)")
