"""Image series packed into one .h5 file (``PUT /__aggregate_h5/<series>.h5/<part>``).

In this mode a spooler sends its ``metadata.json``, ``frameNNNNN.pzf`` and ``events.json``
to one server, which packs them into a PyTables file instead of a folder of small files.
Reading presents the file as if it were that folder: ``GET /<series>.h5/`` lists the parts
and ``GET /<series>.h5/<part>`` returns each one.

Layout: ``/MetaData`` attributes and ``/Events`` table as in .h5r files; ``/PZFImageData``,
a variable-length uint8 array with one PZF blob per row in arrival order; and
``/PZFFrameNumbers``, the frame number of each of those rows, so frames sent out of order
read back exactly.  Files without ``/PZFFrameNumbers`` (written by PYME) are read as row i =
frame i.  An ``/Events`` table marks the series complete.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tables

from pyme_desk.storage.listing import frame_index, frame_name
from pyme_desk.web.errors import HTTPError
from pyme_desk.storage.hdf5_files import (
    HDF5Store, OpenFile, append_events, event_rows, parse_metadata, read_events,
    read_metadata, write_metadata)

_METADATA_PARTS = ("metadata.json", "MetaData")
#: every PZF blob starts with these two bytes
PZF_MAGIC = b"BD"
PZF_MIN_HEADER = 48

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


class H5SeriesStore(HDF5Store):
    """Appends series parts into .h5 files and reads them back; thread-safe, one per process."""


    def append(self, path: Path, part: str, body: bytes) -> None:
        """Store one part: metadata (JSON object), events (JSON list) or a PZF frame.

        A frame number already stored answers ``HTTPError(405)``; any other part name, or a
        body that does not fit its part, ``HTTPError(400)``.
        """
        if part in _METADATA_PARTS:
            entries = parse_metadata(_json_body(body, part))
            with self._files.use(path, write=True) as opened:
                write_metadata(opened.h5, entries)
        elif part == "events.json":
            rows = event_rows(_json_body(body, part))
            with self._files.use(path, write=True) as opened:
                append_events(opened.h5, rows)
        elif (index := frame_index(part)) is not None:
            if len(body) < PZF_MIN_HEADER or body[:2] != PZF_MAGIC:
                raise HTTPError(400, f"{part} is not PZF data")
            with self._files.use(path, write=True) as opened:
                _append_frame(opened, index, body)
        else:
            raise HTTPError(400, f"{part!r} is not a series part "
                                 "(metadata.json, events.json or frameNNNNN.pzf)")

    def listing(self, path: Path) -> dict[str, list[int]]:
        """The series as a folder listing: ``{"metadata.json": [0, 0], "frame00000.pzf": [0, 0], ...}``."""
        with self._files.use(path, write=False) as opened:
            frames = sorted(_frame_rows(opened))
            complete = "/Events" in opened.h5
        names = ["metadata.json"] + (["events.json"] if complete else [])
        return {name: [0, 0] for name in names + [frame_name(f) for f in frames]}

    def read(self, path: Path, part: str) -> tuple[str, bytes]:
        """(content type, body) of ``metadata.json``, ``events.json`` or ``frameNNNNN.pzf``."""
        with self._files.use(path, write=False) as opened:
            if part == "metadata.json":
                return JSON_TYPE, json.dumps(read_metadata(opened.h5), indent=2).encode()
            if part == "events.json" and "/Events" in opened.h5:
                return JSON_TYPE, json.dumps(read_events(opened.h5)).encode()
            index = frame_index(part)
            if index is not None:
                row = _frame_rows(opened).get(index)
                if row is not None:
                    return BINARY_TYPE, _frame_blob(opened.h5, row)
        raise HTTPError(404, f"{Path(path).name} has no {part}")

    def is_complete(self, path: Path) -> bool:
        """True once the series has its events (the completion marker); False if missing."""
        try:
            with self._files.use(path, write=False) as opened:
                return "/Events" in opened.h5
        except HTTPError:
            return False





def _json_body(body: bytes, part: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"{part} is not valid JSON ({exc})") from None


def _frame_rows(opened: OpenFile) -> dict[int, int]:
    """Frame number -> row of ``/PZFImageData``, memoised while the file stays open."""
    rows = opened.memo.get("frame_rows")
    if rows is None:
        h5 = opened.h5
        if "/PZFFrameNumbers" in h5:
            numbers = h5.get_node("/PZFFrameNumbers").read().tolist()
        elif "/PZFImageData" in h5:
            numbers = range(h5.get_node("/PZFImageData").nrows)
        else:
            numbers = []
        rows = {frame: row for row, frame in enumerate(numbers)}
        opened.memo["frame_rows"] = rows
    return rows


def _append_frame(opened: OpenFile, frame: int, blob: bytes) -> None:
    rows = _frame_rows(opened)
    if frame in rows:
        raise HTTPError(405, f"{frame_name(frame)} already exists")
    h5 = opened.h5
    if "/PZFImageData" not in h5:
        if rows:
            raise HTTPError(400, "series file has frame numbers but no frames")
        h5.create_vlarray("/", "PZFImageData", atom=tables.UInt8Atom())
        h5.create_earray("/", "PZFFrameNumbers", atom=tables.Int64Atom(), shape=(0,))
    elif "/PZFFrameNumbers" not in h5:
        raise HTTPError(400, "series file was not written by pyme-desk; frames cannot be added")
    h5.get_node("/PZFImageData").append(np.frombuffer(blob, np.uint8))
    h5.get_node("/PZFFrameNumbers").append([frame])
    rows[frame] = len(rows)


def _frame_blob(h5: tables.File, row: int) -> bytes:
    node = h5.get_node("/PZFImageData")
    if not isinstance(node, tables.VLArray) or node.atom.kind == "object":
        raise HTTPError(400, "PZFImageData is not stored as raw bytes")
    value = node[row]
    return value if isinstance(value, bytes) else np.asarray(value).tobytes()
