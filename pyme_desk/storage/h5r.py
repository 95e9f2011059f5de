"""The .h5r results store behind ``PUT /__aggregate_h5r/...`` and ``GET /<file>.h5r/<part>``.

Workers append localisation batches to tables of a PyTables file (one per analysis); viewers
and clients read the tables back, whole or as a row slice, as a pickle, ``.npy``, JSON or CSV.
The layout is PYME's: ``/MetaData`` attributes, one table per name (``/FitResults``,
``/DriftResults``, ``/Events``, ...), so a PYME viewer opens our files unchanged.

Appends go straight into the open file (under the process-wide HDF5 lock) and reads go
through the same handle, so a reader always sees every accepted row; the background flush
only bounds what a crash can lose.  ``HTTPError`` carries every client mistake.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import tables

from pyme_desk.web.errors import HTTPError
from pyme_desk.storage.hdf5_files import (
    RESULTS_FILTERS, HDF5Store, append_events, event_rows, parse_metadata, read_metadata,
    write_metadata)

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMATS = {"json", "csv", "txt", "npy"}
#: rows a results table is tuned for (chunk size), as in PYME
EXPECTED_ROWS = 500_000

_NUMPY2_HEAD = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\n"
_NUMPY1_HEAD = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n"

JSON_TYPE = "text/json"
CSV_TYPE = "text/csv"
BINARY_TYPE = "application/octet-stream"


class H5RStore(HDF5Store):
    """Appends to and reads from .h5r/.hdf results files; one instance per server process.

    Thread-safe: every method may be called from any request thread.  Pass ``files`` to share
    one open-file cache with the .h5 series store.
    """


    def append_records(self, path: Path, table: str, records: np.ndarray) -> None:
        """Append a structured array to ``/<table>``, creating file and table on first use.

        A later batch must have the table's columns (``HTTPError(400)`` otherwise).  Records
        for ``Events`` are normalised to the standard events layout.
        """
        _check_table_name(table)
        if table == "MetaData":
            raise HTTPError(400, "MetaData is not a table; send it as a JSON metadata object")
        if table == "Events":
            self.append_events(path, records)
            return
        rows = _as_rows(records, table)
        with self._files.use(path, write=True) as opened:
            h5 = opened.h5
            if f"/{table}" in h5:
                node = h5.get_node(f"/{table}")
                if not isinstance(node, tables.Table):
                    raise HTTPError(400, f"/{table} exists and is not a table")
                node.append(_matching(rows, node.dtype, table))
            else:
                node = h5.create_table("/", table, description=rows.dtype,
                                       filters=RESULTS_FILTERS, expectedrows=EXPECTED_ROWS)
                node.append(rows)

    def append_metadata(self, path: Path, metadata: dict[str, Any]) -> None:
        """Merge a flat dotted-key dict into ``/MetaData`` (creating the file if needed)."""
        entries = parse_metadata(metadata)
        with self._files.use(path, write=True) as opened:
            write_metadata(opened.h5, entries)

    def append_events(self, path: Path, events: Any) -> None:
        """Append events (structured array or list of [name, descr, time]) to ``/Events``."""
        rows = event_rows(events)
        with self._files.use(path, write=True) as opened:
            append_events(opened.h5, rows)




    def read_part(self, path: Path, part: str, query: dict[str, str]) -> tuple[str, bytes]:
        """Answer ``GET /<file>.h5r/<part>[.<fmt>][?from=i&to=j]`` with (content type, body).

        ``Metadata`` gives the metadata as flat dotted-key JSON.  Otherwise ``part`` names a
        table: no suffix -> pickled array (protocol 2, as PYME clients expect), ``.npy``,
        ``.json`` (pandas column-oriented, nested columns dotted) or ``.csv``/``.txt``.
        """
        name, fmt = _split_part(part)
        if name == "Metadata":
            if fmt not in (None, "json"):
                raise HTTPError(400, "Metadata is only available as JSON")
            with self._files.use(path, write=False) as opened:
                metadata = read_metadata(opened.h5)
            return JSON_TYPE, json.dumps(metadata).encode()
        _check_table_name(name)
        start, stop = _row_range(query)
        with self._files.use(path, write=False) as opened:
            if f"/{name}" not in opened.h5:
                raise HTTPError(404, f"{Path(path).name} has no table {name}")
            array = _read_rows(opened.h5.get_node(f"/{name}"), start, stop)
        if fmt is None:
            return BINARY_TYPE, _pickled(array)
        if fmt == "npy":
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            return BINARY_TYPE, buffer.getvalue()
        if fmt == "json":
            return JSON_TYPE, _to_json(array)
        return CSV_TYPE, _to_csv(array)


def _check_table_name(name: str) -> None:
    if not _TABLE_NAME.match(name):
        raise HTTPError(400, f"{name!r} is not a valid table name (letters, digits, _)")


def _as_rows(records: Any, table: str) -> np.ndarray:
    """The records as a 1-D plain structured array, or ``HTTPError(400)``."""
    if not isinstance(records, np.ndarray) or records.dtype.names is None:
        raise HTTPError(400, f"records for /{table} must be a structured (record) array")
    if records.dtype.hasobject:
        raise HTTPError(400, f"records for /{table} hold Python objects")
    if records.ndim > 1:
        raise HTTPError(400, f"records for /{table} must be one-dimensional")
    rows = np.atleast_1d(records).view(np.ndarray)
    if rows.dtype.type is not np.void:
        rows = rows.view(np.dtype((np.void, rows.dtype)))
    problem = _unstorable(rows.dtype)
    if problem:
        raise HTTPError(400, f"records for /{table} cannot be stored: {problem}")
    return rows


@functools.lru_cache(maxsize=64)
def _unstorable(dtype: np.dtype) -> str | None:
    """Why PyTables cannot make a table of ``dtype``, or None; checked before any file is touched."""
    if any(leaf.base.kind == "U" for _, leaf in _leaf_fields(dtype)):
        return "unicode text columns (send bytes, dtype S)"
    try:
        tables.description.descr_from_dtype(dtype)
    except (TypeError, ValueError, NotImplementedError) as exc:
        return str(exc)
    return None


def _matching(rows: np.ndarray, table_dtype: np.dtype, table: str) -> np.ndarray:
    """``rows`` cast to the table's dtype if the columns agree, else ``HTTPError(400)``."""
    if rows.dtype == table_dtype:
        return rows
    if _layout(rows.dtype) != _layout(table_dtype):
        raise HTTPError(400, f"records do not match the columns of /{table}: table has "
                             f"{_describe(table_dtype)}, records have {_describe(rows.dtype)}")
    return rows.astype(table_dtype)


def _layout(dtype: np.dtype) -> Any:
    """What must agree for two dtypes to hold the same columns (byte order and padding aside)."""
    if dtype.names is not None:
        return tuple((name, _layout(dtype.fields[name][0])) for name in dtype.names)
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return (_layout(base), shape)
    return (dtype.kind, dtype.itemsize)


def _describe(dtype: np.dtype) -> str:
    return ", ".join(f"{name}:{dtype.str}" for name, dtype in _leaf_fields(dtype))


def _leaf_fields(dtype: np.dtype, prefix: str = "") -> list[tuple[str, np.dtype]]:
    if dtype.names is None:
        return [(prefix.rstrip("."), dtype)]
    leaves = []
    for name in dtype.names:
        leaves += _leaf_fields(dtype.fields[name][0], f"{prefix}{name}.")
    return leaves


def _split_part(part: str) -> tuple[str, str | None]:
    name, dot, suffix = part.rpartition(".")
    if not dot:
        return part, None
    if suffix not in _FORMATS:
        raise HTTPError(400, f"unknown format {suffix!r} (use json, csv, txt or npy)")
    return name, suffix


def _row_range(query: dict[str, str]) -> tuple[int | None, int | None]:
    bounds = []
    for key in ("from", "to"):
        text = query.get(key)
        try:
            bounds.append(None if text in (None, "") else int(text))
        except ValueError:
            raise HTTPError(400, f"{key}={text!r} is not a row number") from None
    return bounds[0], bounds[1]


def _read_rows(node: tables.Node, start: int | None, stop: int | None) -> np.ndarray:
    if not isinstance(node, (tables.Table, tables.Array)) or isinstance(node, tables.VLArray):
        raise HTTPError(400, f"{node._v_pathname} is not a table")
    first, last, _ = slice(start, stop).indices(node.nrows)
    last = max(first, last)
    if isinstance(node, tables.Table):
        return node.read(first, last)
    return node[first:last]


def _columns(array: np.ndarray, prefix: str = "") -> list[tuple[str, list]]:
    """Flat (name, values) columns: nested fields dotted, sub-array cells split as ``name.i``."""
    if array.dtype.names is not None:
        columns = []
        for name in array.dtype.names:
            columns += _columns(array[name], f"{prefix}{name}.")
        return columns
    if array.ndim == 1:
        return [(prefix[:-1] or "0", _python_values(array))]
    flat = array.reshape(array.shape[0], int(np.prod(array.shape[1:])))
    return [(f"{prefix}{j}", _python_values(flat[:, j])) for j in range(flat.shape[1])]


def _python_values(column: np.ndarray) -> list:
    """Column cells as JSON-ready Python values: text decoded, NaN/inf as None."""
    if column.dtype.kind == "S":
        return [value.decode("utf-8", "replace") for value in column.tolist()]
    values = column.tolist()
    if column.dtype.kind in "fc" and not np.isfinite(column).all():
        bad = np.flatnonzero(~np.isfinite(column))
        for index in bad:
            values[index] = None
    return values


def _pickled(array: np.ndarray) -> bytes:
    """Protocol-2 pickle that names ``numpy.core.multiarray``, which numpy 1.x and 2.x both load.

    numpy 2 writes ``numpy._core``, which the numpy 1.x most PYME installs run cannot import;
    the name only ever appears in the pickle's first opcode.
    """
    data = pickle.dumps(array, protocol=2)
    if data.startswith(_NUMPY2_HEAD):
        data = _NUMPY1_HEAD + data[len(_NUMPY2_HEAD):]
    return data


def _to_json(array: np.ndarray) -> bytes:
    labels = [str(i) for i in range(len(array))]
    return json.dumps({name: dict(zip(labels, values))
                       for name, values in _columns(array)}).encode()


def _to_csv(array: np.ndarray) -> bytes:
    columns = _columns(array)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    writer.writerows(zip(*(values for _, values in columns)))
    return text.getvalue().encode()
