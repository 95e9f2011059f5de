"""HDF5 plumbing shared by the .h5r results store and the .h5 series store.

HDF5 (as PyTables ships it) is not thread-safe, so every HDF5 call in the process goes through
the one re-entrant ``HDF5_LOCK``.  ``OpenHDF5Files`` keeps handles open between requests (the
data server appends thousands of small batches per second), flushes written files every
``flush_interval`` seconds from a background thread and closes files idle for ``keep_open``
seconds.  The module also holds the two layouts both file kinds share: ``/MetaData`` (dotted
keys as attributes of nested groups) and the ``/Events`` table.
"""
from __future__ import annotations

import contextlib
import pickle
import threading
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tables
from tables.attributeset import issysattrname

from pyme_desk.web.errors import HTTPError
from pyme_desk.storage.safe_pickle import loads_restricted

#: serialises every HDF5 call in the process (HDF5 itself is not thread-safe)
HDF5_LOCK = threading.RLock()

EVENTS_DTYPE = np.dtype([("EventName", "S32"), ("EventDescr", "S256"), ("Time", "<f8")])

#: compression for every table we create: zlib level 5 with shuffle, as PYME uses
RESULTS_FILTERS = tables.Filters(complevel=5, complib="zlib", shuffle=True)

# Metadata keys such as "Camera.3DMode" make group names that are not Python identifiers;
# PyTables only warns that attribute-style access will not reach them.
warnings.filterwarnings("ignore", category=tables.NaturalNameWarning)


def _guard_pytables_unpickling() -> None:
    """Make PyTables unpickle attribute values (and object atoms) with the restricted unpickler.

    PyTables unpickles every attribute that looks like a pickle as soon as a node's attributes
    are touched, which happens whenever it opens a node; a hostile .h5r/.h5 file uploaded to
    the server could then run code.  Plain data and numpy arrays still load (PYME stores lists
    and None that way); anything naming another global stays as raw bytes.
    """
    guarded = types.ModuleType("pickle")
    guarded.__dict__.update(pickle.__dict__)
    guarded.loads = loads_restricted
    tables.attributeset.pickle = guarded
    tables.atom.pickle = guarded


_guard_pytables_unpickling()


@dataclass
class OpenFile:
    """One cached PyTables handle; ``memo`` lets a store keep per-file lookups (reset on reopen)."""

    h5: tables.File
    writable: bool
    last_used: float
    dirty: bool = False
    memo: dict[str, Any] = field(default_factory=dict)


class OpenHDF5Files:
    """Cache of open HDF5 files with periodic flushing and idle closing."""

    def __init__(self, flush_interval: float = 1.0, keep_open: float = 20.0):
        self._flush_interval = flush_interval
        self._keep_open = keep_open
        self._open: dict[Path, OpenFile] = {}
        #: the running flush thread and the event that stops it; None while no file is open
        self._housekeeper: tuple[threading.Thread, threading.Event] | None = None

    @contextlib.contextmanager
    def use(self, path: Path, write: bool) -> Iterator[OpenFile]:
        """Hold ``HDF5_LOCK`` and yield the open file at ``path``.

        ``write=True`` creates the file (and its parents) if missing and marks it for the next
        flush.  Reading a missing file raises ``HTTPError(404)``; a file that is not HDF5, 400.
        """
        key = Path(path).resolve()
        with HDF5_LOCK:
            entry = self._open.get(key)
            if entry is not None and write and not entry.writable:
                self._close(key)
                entry = None
            if entry is None:
                entry = OpenFile(_open_h5(key, write), write, time.monotonic())
                self._open[key] = entry
                self._start_housekeeping()
            try:
                yield entry
            finally:
                entry.last_used = time.monotonic()
                entry.dirty = entry.dirty or write

    def is_writing(self, path: Path) -> bool:
        """True while the file at ``path`` is held open for appending."""
        with HDF5_LOCK:
            entry = self._open.get(Path(path).resolve())
            return entry is not None and entry.writable

    def writing(self) -> list[Path]:
        """Every file held open for appending right now."""
        with HDF5_LOCK:
            return [key for key, entry in self._open.items() if entry.writable]

    def flush(self, path: Path | None = None) -> None:
        """Write buffered data of one file (or of every open file) to disk."""
        with HDF5_LOCK:
            keys = list(self._open) if path is None else [Path(path).resolve()]
            for key in keys:
                entry = self._open.get(key)
                if entry is not None and entry.dirty:
                    entry.h5.flush()
                    entry.dirty = False

    def close(self) -> None:
        """Flush and close every file and stop the background thread; the cache stays usable."""
        with HDF5_LOCK:
            housekeeper, self._housekeeper = self._housekeeper, None
            if housekeeper is not None:
                housekeeper[1].set()
            for key in list(self._open):
                self._close(key)
        if housekeeper is not None:
            housekeeper[0].join()

    def _close(self, key: Path) -> None:
        entry = self._open.pop(key)
        entry.h5.close()  # closing flushes

    def _start_housekeeping(self) -> None:
        if self._housekeeper is None:
            stop = threading.Event()
            thread = threading.Thread(target=self._housekeep, args=(stop,),
                                      name="pyme-desk-hdf5-flush", daemon=True)
            self._housekeeper = (thread, stop)
            thread.start()

    def _housekeep(self, stop: threading.Event) -> None:
        while not stop.wait(self._flush_interval):
            with HDF5_LOCK:
                if stop.is_set():
                    return
                now = time.monotonic()
                for key, entry in list(self._open.items()):
                    if now - entry.last_used > self._keep_open:
                        self._close(key)
                    elif entry.dirty:
                        entry.h5.flush()
                        entry.dirty = False
                if not self._open:
                    self._housekeeper = None
                    return


class HDF5Store:
    """What the results and series stores share: an open-file cache and its lifecycle."""

    def __init__(self, flush_interval: float = 1.0, keep_open: float = 20.0,
                 files: "OpenHDF5Files | None" = None):
        self._files = files or OpenHDF5Files(flush_interval, keep_open)

    def is_open(self, path: Path) -> bool:
        """True while the file is held open for appending (listings may flag it as growing)."""
        return self._files.is_writing(path)

    def open_files(self) -> list[Path]:
        """The files held open for appending right now (not safe to copy yet)."""
        return self._files.writing()

    def flush(self, path: Path | None = None) -> None:
        """Write buffered data of one file, or of all open files, to disk now."""
        self._files.flush(path)

    def close(self) -> None:
        """Flush and close every file (server shutdown); the store may still be used later."""
        self._files.close()


def _open_h5(path: Path, write: bool) -> tables.File:
    if path.is_dir():
        raise HTTPError(400, f"{path.name} is a directory, not an HDF5 file")
    if path.exists():
        if not tables.is_hdf5_file(str(path)):
            raise HTTPError(400, f"{path.name} is not an HDF5 file")
        return tables.open_file(str(path), "a" if write else "r")
    if not write:
        raise HTTPError(404, f"{path.name} not found")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HTTPError(400, f"cannot create the folder for {path.name}: {exc.strerror}") from None
    return tables.open_file(str(path), "w")


# ---------------------------------------------------------------------------------- metadata

def parse_metadata(metadata: Any) -> list[tuple[list[str], Any]]:
    """Check a flat dotted-key dict before anything is written: ``[(key parts, value), ...]``."""
    if not isinstance(metadata, dict):
        raise HTTPError(400, "metadata must be a JSON object")
    entries = []
    for key, value in metadata.items():
        parts = str(key).split(".")
        if any(not part or "/" in part for part in parts):
            raise HTTPError(400, f"metadata key {key!r} is not a dotted name")
        if issysattrname(parts[-1]):
            raise HTTPError(400, f"metadata key {key!r} ends in a name HDF5 files reserve")
        entries.append((parts, _attribute_value(value)))
    return entries


def write_metadata(h5: tables.File, entries: list[tuple[list[str], Any]]) -> None:
    """Merge parsed entries into ``/MetaData``: ``Camera.ADOffset`` -> attr on ``/MetaData/Camera``."""
    root = _child_group(h5, h5.root, "MetaData")
    for parts, value in entries:
        group = root
        for part in parts[:-1]:
            group = _child_group(h5, group, part)
        group._v_attrs[parts[-1]] = value


def read_metadata(h5: tables.File) -> dict[str, Any]:
    """``/MetaData`` as a flat dotted-key dict of JSON-ready values (empty if absent).

    Pickled values load through the restricted unpickler (see ``_guard_pytables_unpickling``).
    """
    if "/MetaData" not in h5:
        return {}
    flat: dict[str, Any] = {}
    for group in h5.walk_groups("/MetaData"):
        prefix = group._v_pathname[len("/MetaData/"):].replace("/", ".")
        attrs = group._v_attrs
        for name in attrs._v_attrnamesuser:
            key = f"{prefix}.{name}" if prefix else name
            flat[key] = _json_ready(getattr(attrs, name))
    return dict(sorted(flat.items()))


def _child_group(h5: tables.File, parent: tables.Group, name: str) -> tables.Group:
    if name not in parent:
        return h5.create_group(parent, name)
    child = parent._f_get_child(name)
    if not isinstance(child, tables.Group):
        raise HTTPError(400, f"{child._v_pathname} exists and is not a metadata group")
    return child


def _attribute_value(value: Any) -> Any:
    """Python value as PyTables stores it: scalars natively, other JSON values pickled (plain data)."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return float(value)
    return value


def _json_ready(value: Any) -> Any:
    """An attribute value as plain JSON-able Python: numpy unwrapped, bytes decoded."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------------- events

def event_rows(events: Any) -> np.ndarray:
    """Events as ``EVENTS_DTYPE`` rows, from a structured array or a list of [name, descr, time]."""
    if isinstance(events, np.ndarray) and events.dtype.names is not None:
        missing = set(EVENTS_DTYPE.names) - set(events.dtype.names)
        if missing:
            raise HTTPError(400, f"events lack the fields {sorted(missing)}")
        rows = np.zeros(events.shape[0] if events.ndim else 1, EVENTS_DTYPE)
        for name in EVENTS_DTYPE.names:
            column = np.atleast_1d(events[name])
            if column.dtype.kind == "U":
                column = np.char.encode(column, "utf-8")
            rows[name] = column
        return rows
    if not isinstance(events, (list, tuple)):
        raise HTTPError(400, "events must be a list of [name, description, time]")
    rows = np.zeros(len(events), EVENTS_DTYPE)
    for i, event in enumerate(events):
        if not isinstance(event, (list, tuple)) or len(event) != 3:
            raise HTTPError(400, f"event {i} is not [name, description, time]")
        name, descr, when = event
        if not isinstance(when, (int, float)) or isinstance(when, bool):
            raise HTTPError(400, f"event {i} has a non-numeric time")
        rows[i] = (_event_text(name, i), _event_text(descr, i), float(when))
    return rows


def append_events(h5: tables.File, rows: np.ndarray) -> None:
    """Append ``EVENTS_DTYPE`` rows to ``/Events``, creating the table if needed."""
    if "/Events" in h5:
        table = h5.get_node("/Events")
        if not isinstance(table, tables.Table) or set(table.colnames) != set(EVENTS_DTYPE.names):
            raise HTTPError(400, "/Events exists but is not an events table")
        table.append(rows.astype(table.dtype))
    else:
        h5.create_table("/", "Events", obj=rows, filters=RESULTS_FILTERS)


def read_events(h5: tables.File) -> list[list]:
    """``/Events`` as a list of ``[name, description, time]``; empty if the table is absent."""
    if "/Events" not in h5:
        return []
    return [[bytes(row["EventName"]).decode("utf-8", "replace"),
             bytes(row["EventDescr"]).decode("utf-8", "replace"),
             float(row["Time"])] for row in h5.get_node("/Events").read()]


def _event_text(value: Any, index: int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise HTTPError(400, f"event {index} has a name or description that is not text")
