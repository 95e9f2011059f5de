"""The cluster file browser's state: merged listings, series details, frames, transfers.

Every method here blocks on the network, so the GUI calls them from worker threads; results
are immutable (:class:`FileRow`, :class:`SeriesInfo`) or fresh numpy arrays.

Listings carry no dates (PYME's wire format has names, kinds and sizes only), so a file's
modification time is asked for one file at a time (:meth:`FilesModel.modified`, an HTTP HEAD),
never for a whole folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import requests

from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.errors import ClusterFileNotFoundError

#: Chunk size for progress reports on download (bytes).
PROGRESS_CHUNK = 1 << 20
#: Seconds a HEAD request for a file's date may take.
HEAD_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class FileRow:
    """One name in a cluster directory."""

    name: str  # without a trailing "/"
    path: str  # cluster path, without a trailing "/"
    is_dir: bool
    is_series: bool
    complete: bool
    size: int  # bytes, or entries for a directory

    @property
    def kind(self) -> str:
        if self.is_series:
            return "series (complete)" if self.complete else "series (being written)"
        return "folder" if self.is_dir else "file"


@dataclass(frozen=True)
class SeriesInfo:
    """A spooled series: how many frames, whether it is complete, and its metadata."""

    path: str
    frames: int
    complete: bool
    metadata: dict[str, Any]


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """``"a/b/c"`` -> ``[("/", ""), ("a", "a"), ("b", "a/b"), ("c", "a/b/c")]`` (label, path)."""
    crumbs = [("/", "")]
    parts = [p for p in path.strip("/").split("/") if p]
    for i, part in enumerate(parts):
        crumbs.append((part, "/".join(parts[: i + 1])))
    return crumbs


def join(directory: str, name: str) -> str:
    directory = directory.strip("/")
    return f"{directory}/{name}" if directory else name


class FilesModel:
    """Reads the cluster behind ``client``; see the module docstring."""

    def __init__(self, client: ClusterClient) -> None:
        self.client = client

    def list(self, path: str = "") -> tuple[FileRow, ...]:
        """The merged listing of a directory: folders first, then files, each by name."""
        rows = []
        for name, entry in self.client.list_entries(path).items():
            bare = name.rstrip("/")
            rows.append(FileRow(name=bare, path=join(path, bare), is_dir=entry.is_dir or name.endswith("/"),
                                is_series=entry.is_series, complete=entry.is_complete, size=entry.size))
        rows.sort(key=lambda r: (not r.is_dir, r.name.lower()))
        return tuple(rows)

    def modified(self, path: str) -> float | None:
        """When file ``path`` was last modified (Unix time) by its data server's ``Last-Modified``
        header; ``None`` when the server does not say."""
        locations = self.client.locate_file(path)
        if not locations:
            raise ClusterFileNotFoundError(f"{path!r} is on no data server")
        r = requests.head(locations[0][0], timeout=HEAD_TIMEOUT_S)
        r.raise_for_status()
        stamp = r.headers.get("Last-Modified")
        try:
            return parsedate_to_datetime(stamp).timestamp() if stamp else None
        except (TypeError, ValueError):
            return None

    def series_info(self, path: str) -> SeriesInfo:
        from pyme_desk.formats.series import open_series
        series = open_series(path, self.client)
        return SeriesInfo(path=path, frames=len(series), complete=series.is_complete,
                          metadata=series.metadata)

    def frame(self, path: str, index: int) -> np.ndarray:
        """Frame ``index`` of the series at ``path``: one file read, located from a listing of the
        frames from it on, so browsing a long series does not list it whole for every frame."""
        from pyme_desk.formats.pzf import decode
        from pyme_desk.storage.listing import frame_name

        if index < 0:
            raise IndexError(f"frame {index} of {path}: frames are numbered from 0")
        try:
            return decode(self.client.get_file(f"{path.rstrip('/')}/{frame_name(index)}"))
        except ClusterFileNotFoundError:
            raise IndexError(f"{path} has no frame {index} (yet)") from None

    def download(self, path: str, destination: Path,
                 progress: Callable[[int, int], None] | None = None) -> Path:
        """Fetch one file to ``destination`` (written whole, then renamed into place)."""
        data = self.client.get_file(path)
        destination = Path(destination)
        tmp = destination.with_name(destination.name + ".part")
        with open(tmp, "wb") as f:
            for start in range(0, len(data), PROGRESS_CHUNK):
                f.write(data[start:start + PROGRESS_CHUNK])
                if progress:
                    progress(min(start + PROGRESS_CHUNK, len(data)), len(data))
        tmp.replace(destination)
        if progress and not data:
            progress(0, 0)
        return destination

    def upload(self, source: Path, directory: str,
               progress: Callable[[int, int], None] | None = None) -> str:
        """Store a local file under ``directory`` on the cluster; returns the server that took it."""
        source = Path(source)
        data = source.read_bytes()
        if progress:
            progress(0, len(data))
        server = self.client.put_file(join(directory, source.name), data)
        if progress:
            progress(len(data), len(data))
        return server
