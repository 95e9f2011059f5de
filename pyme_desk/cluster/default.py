"""Module-level functions backed by shared ClusterClients, for scripts.

``from pyme_desk import cluster; cluster.get_file("dir/file", "myfilter")``.  Each function
takes an optional ``server_filter`` (or a ``pyme-cluster://<filter>/...`` URI names one); the
default is the configured cluster (``dataserver-filter``).  One client per cluster name is
created on first use and kept; :func:`configure` replaces the default one, for example with
explicit server URLs.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator, Sequence

from pyme_desk.cluster.client import ClusterClient, ClusterStat
from pyme_desk.cluster.listing import Listing
from pyme_desk.cluster.uris import ClusterURI, parse_uri

_lock = threading.Lock()
_default: ClusterClient | None = None
_by_filter: dict[str, ClusterClient] = {}


def configure(servers: Iterable[str] | None = None, **options: Any) -> ClusterClient:
    """Replace the default client with ``ClusterClient(servers, **options)`` and return it.

    Clients made earlier for other cluster names are closed and forgotten.
    """
    global _default
    new = ClusterClient(servers, **options)
    reset()
    with _lock:
        _default = new
    return new


def reset() -> None:
    """Close and forget every shared client; the next call builds the default one afresh."""
    global _default
    with _lock:
        old = [c for c in [_default, *_by_filter.values()] if c is not None]
        _default = None
        _by_filter.clear()
    for c in old:
        c.close()


def client(server_filter: str | None = None) -> ClusterClient:
    """The shared client for ``server_filter`` (None: the default cluster)."""
    global _default
    with _lock:
        if _default is None:
            _default = ClusterClient()
        if server_filter is None or server_filter == _default.server_filter:
            return _default
        found = _by_filter.get(server_filter)
        if found is None:
            found = _by_filter[server_filter] = ClusterClient(server_filter=server_filter)
        return found


def _for(path: str, server_filter: str | None) -> ClusterClient:
    target = parse_uri(path)
    if isinstance(target, ClusterURI) and target.server_filter and server_filter is None:
        server_filter = target.server_filter
    return client(server_filter)


def get_file(path: str, server_filter: str | None = None) -> bytes:
    return _for(path, server_filter).get_file(path)


def put_file(path: str, data: bytes, server_filter: str | None = None) -> str:
    return _for(path, server_filter).put_file(path, data)


def put_files(files: Sequence[tuple[str, bytes]], server_filter: str | None = None) -> list[str]:
    return client(server_filter).put_files(files)


def listdir(path: str = "", server_filter: str | None = None) -> list[str]:
    return _for(path, server_filter).listdir(path)


def list_entries(path: str = "", server_filter: str | None = None) -> Listing:
    return _for(path, server_filter).list_entries(path)


def isdir(path: str, server_filter: str | None = None) -> bool:
    return _for(path, server_filter).isdir(path)


def exists(path: str, server_filter: str | None = None) -> bool:
    return _for(path, server_filter).exists(path)


def stat(path: str, server_filter: str | None = None) -> ClusterStat:
    return _for(path, server_filter).stat(path)


def walk(top: str = "", server_filter: str | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    return _for(top, server_filter).walk(top)


def glob(pattern: str, server_filter: str | None = None) -> list[str]:
    return client(server_filter).glob(pattern)


def locate_file(path: str, server_filter: str | None = None) -> list[tuple[str, float]]:
    return _for(path, server_filter).locate_file(path)


def mirror_file(path: str, server_filter: str | None = None) -> str:
    return _for(path, server_filter).mirror_file(path)


def get_status(server_filter: str | None = None) -> list[dict]:
    return client(server_filter).get_status()


def aggregate_url(uri: str, server_filter: str | None = None) -> str:
    return _for(uri, server_filter).aggregate_url(uri)


def file_results(uri: str, data: Any, server_filter: str | None = None) -> str:
    return _for(uri, server_filter).file_results(uri, data)
