"""Decode record arrays sent to the data server without ever running code from the body.

PYME workers file their localisations as pickled numpy structured arrays.  A plain
``pickle.loads`` would let any client run code on the server, so pickles here go through an
unpickler that resolves only the handful of numpy names an array pickle refers to (under both
the numpy 1.x ``numpy.core`` and numpy 2.x ``numpy._core`` spellings) and refuses every other
global.  ``.npy`` and JSON bodies are accepted as well, so our own clients never need pickle.
"""
from __future__ import annotations

import io
import json
import math
import pickle
from typing import Any

import numpy as np

from pyme_desk.formats.npy import load_npy
from pyme_desk.web.errors import HTTPError

_REFUSED = "refused: only numpy arrays may be pickled"


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles spell bytes as latin-1 text."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"{_REFUSED} (codec {encoding!r})")
    return text.encode("latin-1")


def _array_globals() -> dict[tuple[str, str], Any]:
    """Every (module, name) an array pickle may name, mapped to the live numpy object."""
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
        allowed[(f"{core}.records", "recarray")] = np.recarray
        allowed[(f"{core}.records", "record")] = np.record
    for module in ("numpy", "numpy.rec"):
        allowed[(module, "recarray")] = np.recarray
        allowed[(module, "record")] = np.record
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


_ALLOWED = _array_globals()


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the numpy names an array pickle needs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{_REFUSED} ({module}.{name})") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{_REFUSED} (persistent id)")


def loads_array(data: bytes) -> np.ndarray:
    """Unpickle a numpy array (plain or structured, numpy 1.x or 2.x, protocol 0-5).

    Anything else in the pickle, or an object-dtype array, is refused with ``HTTPError(400)``.
    """
    try:
        value = loads_restricted(data)
    except pickle.UnpicklingError as exc:
        if str(exc).startswith(_REFUSED):
            raise HTTPError(400, f"pickled body {exc}") from None
        raise HTTPError(400, f"pickled body is not a valid numpy array pickle ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise HTTPError(400, f"pickled body {_REFUSED} (got {type(value).__name__})")
    if value.dtype.hasobject:
        raise HTTPError(400, "pickled body refused: arrays of Python objects are not accepted")
    return _plain(value)


def loads_restricted(data: bytes, encoding: str = "ASCII", **_: Any) -> Any:
    """Unpickle plain Python data and numpy arrays; raise ``pickle.UnpicklingError`` otherwise.

    Signature-compatible with ``pickle.loads`` so PyTables can use it for attribute values
    (see ``pyme_desk.storage.hdf5_files``).
    """
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding=encoding).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # malformed pickles raise almost any exception type
        raise pickle.UnpicklingError(str(exc)) from None


def decode_records(data: bytes) -> np.ndarray:
    """Decode an aggregate body into a numpy array: restricted pickle, ``.npy``, or JSON.

    JSON may be a list of record objects, pandas column-oriented ``{"col": {"0": v, ...}}``,
    or ``{"col": [v, ...]}``; dotted column names (``fitResults.x0``) and nested objects
    become nested fields.  Anything undecodable raises ``HTTPError(400)``.
    """
    if data[:1] == b"\x80":
        return loads_array(data)
    if data[:6] == b"\x93NUMPY":
        return _load_npy(data)
    head = data.lstrip()[:1]
    if head in (b"{", b"["):
        return _records_from_json(data)
    if head in (b"c", b"("):  # protocol 0/1 pickles start with GLOBAL or MARK
        return loads_array(data)
    raise HTTPError(400, "body is neither a numpy pickle, .npy data nor JSON records")


def _plain(array: np.ndarray) -> np.ndarray:
    """Drop the recarray/record wrappers so the result is a plain ndarray with a void dtype."""
    array = array.view(np.ndarray)
    if array.dtype.names is not None and array.dtype.type is not np.void:
        array = array.view(np.dtype((np.void, array.dtype)))
    return array


def _load_npy(data: bytes) -> np.ndarray:
    try:
        array = load_npy(data)
    except SystemError:  # an interpreter fault is ours, not the client's: a 500, not a 400
        raise
    except Exception as exc:
        raise HTTPError(400, f"body is not valid .npy data ({exc})") from None
    return _plain(array)


def _records_from_json(data: bytes) -> np.ndarray:
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"body is not valid JSON ({exc})") from None
    columns = _json_columns(parsed)
    if not columns:
        raise HTTPError(400, "JSON body holds no columns")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise HTTPError(400, "JSON columns have different lengths")
    flat_types = {name: _column_dtype(name, values) for name, values in columns.items()}
    array = np.zeros(lengths.pop(), dtype=_nested_dtype(flat_types))
    for name, values in columns.items():
        target = array
        for part in name.split("."):
            target = target[part]
        target[...] = _column_values(values, flat_types[name])
    return array


def _json_columns(parsed: Any) -> dict[str, list]:
    """Flat dotted column name -> list of values, from any of the accepted JSON layouts."""
    if isinstance(parsed, list):
        if not all(isinstance(record, dict) for record in parsed):
            raise HTTPError(400, "JSON list must hold one object per record")
        rows = [_flatten(record) for record in parsed]
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        return {name: [row.get(name) for row in rows] for name in names}
    if isinstance(parsed, dict):
        if all(isinstance(col, list) for col in parsed.values()):
            return _flatten_columns({name: list(col) for name, col in parsed.items()})
        if all(isinstance(col, dict) for col in parsed.values()):
            return _flatten_columns(_columns_from_index_maps(parsed))
    raise HTTPError(400, "JSON body is not a list of records or a column-oriented table")


def _columns_from_index_maps(parsed: dict[str, dict]) -> dict[str, list]:
    """pandas ``orient="columns"`` layout: align every column on the union of row labels."""
    labels: dict[str, None] = {}
    for column in parsed.values():
        labels.update(dict.fromkeys(column))
    order = list(labels)
    if all(label.lstrip("-").isdigit() for label in order):
        order.sort(key=int)
    return {name: [column.get(label) for label in order] for name, column in parsed.items()}


def _flatten_columns(columns: dict[str, list]) -> dict[str, list]:
    """Split columns whose cells are objects into dotted sub-columns."""
    flat: dict[str, list] = {}
    for name, values in columns.items():
        if values and all(isinstance(v, dict) for v in values):
            rows = [_flatten(v) for v in values]
            subnames: dict[str, None] = {}
            for row in rows:
                subnames.update(dict.fromkeys(row))
            for sub in subnames:
                flat[f"{name}.{sub}"] = [row.get(sub) for row in rows]
        else:
            flat[name] = values
    return flat


def _flatten(record: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _column_dtype(name: str, values: list) -> np.dtype:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
        return np.dtype(bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present) and present \
            and len(present) == len(values) and all(-2**63 <= v < 2**63 for v in present):
        return np.dtype(np.int64)
    if all(isinstance(v, (int, float)) for v in present):
        return np.dtype(np.float64)
    if all(isinstance(v, str) for v in present):
        width = max((len(v.encode("utf-8")) for v in present), default=1)
        return np.dtype(f"S{max(width, 1)}")
    raise HTTPError(400, f"JSON column {name!r} mixes value types or holds lists")


def _column_values(values: list, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "S":
        return np.array([(v or "").encode("utf-8") for v in values], dtype=dtype)
    if dtype.kind == "f":
        return np.array([math.nan if v is None else float(v) for v in values], dtype=dtype)
    return np.array(values, dtype=dtype)


def _nested_dtype(flat_types: dict[str, np.dtype]) -> np.dtype:
    """Build a nested structured dtype from dotted names, keeping first-seen order."""
    tree: dict[str, Any] = {}
    for name, dtype in flat_types.items():
        node = tree
        parts = name.split(".")
        if any(not part for part in parts):
            raise HTTPError(400, f"JSON column name {name!r} has an empty part")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise HTTPError(400, f"JSON column {name!r} clashes with column {part!r}")
        if parts[-1] in node:
            raise HTTPError(400, f"JSON column {name!r} clashes with a nested column")
        node[parts[-1]] = dtype

    def build(node: dict[str, Any]) -> np.dtype:
        return np.dtype([(key, build(sub) if isinstance(sub, dict) else sub)
                         for key, sub in node.items()])

    return build(tree)
