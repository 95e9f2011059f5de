"""Read a spooled image series back as a lazy sequence of frames (protocol.md §4).

A series is a folder holding ``metadata.json``, ``frameNNNNN.pzf`` files, and at the end
``final_metadata.json`` and ``events.json`` (the completion marker), or the same parts packed
into one ``<series>.h5`` file, which data servers present as the folder ``<series>.h5/``.
:func:`open_series` opens either kind on the cluster (a ``pyme-cluster://`` URI or a cluster
path) or on this machine (a local folder or ``.h5`` file), even while it is still being
written: ``len(series)`` is the number of frames available from frame 0 without a gap, and
it grows as frames arrive (the listing is read again at most every ``refresh_interval``
seconds, or at once with :meth:`Series.refresh`).

Frames are fetched and decoded only when indexed; ``series[i]`` is a 2-D ``[x, y]`` array and
``series[a:b]`` a stack of shape ``(n, x, y)``.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pyme_desk.formats.pzf import PZFError, decode
from pyme_desk.storage.listing import frame_name



class SeriesError(Exception):
    """A series cannot be read as asked."""


class SeriesNotFoundError(SeriesError, FileNotFoundError):
    """No series of that name exists, or a frame it should hold is missing."""


# -- where the parts come from -----------------------------------------------------------------
# A source has names(first_frame) -> the names of its parts; frames numbered below first_frame
# may be left out.  read(name) -> bytes, close().

class _ClusterSource:
    """Parts of a series on the cluster, read through a ClusterClient."""

    def __init__(self, client, path: str, owns_client: bool):
        self.client = client
        self.path = path
        self.owns_client = owns_client
        self.where = f"pyme-cluster://{client.server_filter}/{path}"

    def names(self, first_frame: int = 0) -> set[str]:
        from pyme_desk.cluster import ClusterError

        try:
            return set(self.client.list_new_frames(self.path, first_frame))
        except ClusterError as e:
            raise SeriesError(f"cannot list {self.where}: {e}") from None

    def read(self, name: str) -> bytes:
        from pyme_desk.cluster import ClusterError, ClusterFileNotFoundError

        try:
            return self.client.get_file(f"{self.path}/{name}")
        except ClusterFileNotFoundError:
            raise SeriesNotFoundError(f"{self.where}/{name} not found") from None
        except ClusterError as e:
            raise SeriesError(f"cannot read {self.where}/{name}: {e}") from None

    def close(self) -> None:
        if self.owns_client:
            self.client.close()


class _FolderSource:
    """Parts of a series in a folder on this machine."""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    def names(self, first_frame: int = 0) -> set[str]:
        try:
            return set(os.listdir(self.path))
        except FileNotFoundError:
            return set()
        except OSError as e:
            raise SeriesError(f"cannot list {self.path}: {e.strerror or e}") from None

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise SeriesNotFoundError(f"{self.path / name} not found") from None
        except OSError as e:
            raise SeriesError(f"cannot read {self.path / name}: {e.strerror or e}") from None

    def close(self) -> None:
        pass


class _H5FileSource:
    """Parts of a series packed into a ``.h5`` file on this machine (once its writer closed it:
    HDF5 files cannot be read while another process appends to them)."""

    def __init__(self, path: Path):
        from pyme_desk.storage.h5series import H5SeriesStore

        self.path = path
        self.where = str(path)
        self._store = H5SeriesStore()

    def names(self, first_frame: int = 0) -> set[str]:
        from pyme_desk.web.errors import HTTPError

        if not self.path.exists():
            return set()
        try:
            return set(self._store.listing(self.path))
        except HTTPError as e:
            raise SeriesError(f"cannot read {self.path}: {e}") from None

    def read(self, name: str) -> bytes:
        from pyme_desk.web.errors import HTTPError

        try:
            return self._store.read(self.path, name)[1]
        except HTTPError as e:
            if getattr(e, "status", None) == 404:
                raise SeriesNotFoundError(f"{self.path} has no {name}") from None
            raise SeriesError(f"cannot read {name} from {self.path}: {e}") from None

    def close(self) -> None:
        self._store.close()


# -- the series ----------------------------------------------------------------------------------

class Series:
    """A spooled series as a lazy, growing sequence of frames; see the module docstring."""

    def __init__(self, source, refresh_interval: float = 1.0):
        self._source = source
        self.uri: str = source.where
        self.refresh_interval = refresh_interval
        self._lock = threading.RLock()
        self._names: set[str] = set()
        self._count = 0
        self._complete = False
        self._refreshed_at = -float("inf")
        self._metadata: dict[str, Any] | None = None
        self._metadata_final = False
        self._events: list[tuple[str, str, float]] | None = None
        self.refresh()
        if "metadata.json" not in self._names:
            if not self._names:
                raise SeriesNotFoundError(f"no series at {self.uri}")
            raise SeriesError(f"{self.uri} is not a spooled series (it has no metadata.json)")

    # -- growth ------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Read the listing again now; returns the number of frames available.

        Only frames from the current count on are asked for (they are all a growing series
        needs), so a refresh costs the same at frame 100 and at frame 1,000,000."""
        names = self._source.names(self._count)
        with self._lock:
            self._names = names
            while frame_name(self._count) in names:
                self._count += 1
            self._complete = "events.json" in names
            self._refreshed_at = time.monotonic()
            return self._count

    def _maybe_refresh(self) -> None:
        if not self._complete and time.monotonic() - self._refreshed_at >= self.refresh_interval:
            self.refresh()

    def __len__(self) -> int:
        self._maybe_refresh()
        return self._count

    @property
    def is_complete(self) -> bool:
        """True once ``events.json`` is there: the spooler has stored every frame."""
        self._maybe_refresh()
        return self._complete

    # -- frames ------------------------------------------------------------------------------

    def __getitem__(self, key: int | slice) -> np.ndarray:
        if isinstance(key, slice):
            indices = range(*key.indices(len(self)))
            if not indices:
                return np.empty((0,), dtype=np.uint16)
            return np.stack([self._frame(i) for i in indices])
        index = int(key)
        if index < 0:
            index += len(self)
            if index < 0:
                raise IndexError(f"frame index {key} out of range ({self._count} frames)")
        elif index >= self._count:
            self.refresh()
        if index >= self._count:
            more = "" if self._complete else " so far; the series is still being written"
            raise IndexError(f"frame {index} of {self.uri} is not available ({self._count} frames{more})")
        return self._frame(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._frame(i)

    def _frame(self, index: int) -> np.ndarray:
        name = frame_name(index)
        blob = self._source.read(name)
        try:
            return decode(blob)
        except PZFError as e:
            raise PZFError(f"{self.uri}/{name}: {e}") from e

    # -- metadata and events -----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """``final_metadata.json`` once the series is complete, ``metadata.json`` before."""
        complete = self.is_complete
        with self._lock:
            final = complete and "final_metadata.json" in self._names
            if self._metadata is None or (final and not self._metadata_final):
                name = "final_metadata.json" if final else "metadata.json"
                self._metadata = self._json(name, dict)
                self._metadata_final = final
            return dict(self._metadata)

    @property
    def events(self) -> list[tuple[str, str, float]]:
        """``(name, description, time)`` of each event; empty until the series is complete."""
        if not self.is_complete:
            return []
        with self._lock:
            if self._events is None:
                rows = self._json("events.json", list)
                try:
                    self._events = [(str(n), str(d), float(t)) for n, d, t in rows]
                except (TypeError, ValueError):
                    raise SeriesError(f"{self.uri}/events.json is not a list of "
                                      "[name, description, time]") from None
            return list(self._events)

    def _json(self, name: str, kind: type) -> Any:
        try:
            data = json.loads(self._source.read(name))
        except (ValueError, UnicodeDecodeError):
            raise SeriesError(f"{self.uri}/{name} is not valid JSON") from None
        if not isinstance(data, kind):
            raise SeriesError(f"{self.uri}/{name} is not a JSON {kind.__name__}")
        return data

    def close(self) -> None:
        """Release the client or file this series opened for itself."""
        self._source.close()

    def __enter__(self) -> "Series":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "complete" if self._complete else "being written"
        return f"<Series {self.uri}: {self._count} frames, {state}>"


def open_series(uri_or_path: str | Path, client=None, *, refresh_interval: float = 1.0) -> Series:
    """Open a spooled series for reading; see the module docstring.

    ``uri_or_path``: a ``pyme-cluster://<filter>/<series>`` URI; a cluster path (read through
    ``client``); or a :class:`~pathlib.Path` (or a string naming an existing local file or
    folder, when no ``client`` is given) on this machine.  A cluster URI without ``client``
    gets a client of its own for the URI's cluster (discovery), closed by :meth:`Series.close`.
    """
    from pyme_desk.cluster.uris import is_cluster_uri, parse_cluster_uri

    if isinstance(uri_or_path, Path) or (client is None and not is_cluster_uri(str(uri_or_path))
                                         and os.path.exists(str(uri_or_path))):
        path = Path(uri_or_path)
        source = _H5FileSource(path) if path.suffix == ".h5" and not path.is_dir() else _FolderSource(path)
        return Series(source, refresh_interval)
    text = str(uri_or_path)
    owns = client is None
    if owns:
        from pyme_desk.cluster import ClusterClient

        server_filter = parse_cluster_uri(text).server_filter if is_cluster_uri(text) else None
        client = ClusterClient(server_filter=server_filter)
    try:
        path = (parse_cluster_uri(text).path if is_cluster_uri(text) else text).strip("/")
        return Series(_ClusterSource(client, path, owns), refresh_interval)
    except BaseException:
        if owns:
            client.close()
        raise
