"""Which data server receives a new file.

PYME picks the server this process used least recently (protocol.md §3.3).  We keep that
round robin and add what PYME left as a TODO: a server whose ``/__status`` says it is
unresponsive, or whose free disk is below the file's size plus a safety margin, is never
chosen.  A server with no status document, or no ``Disk`` figure in it, is taken on trust.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Collection, Mapping, Sequence

from pyme_desk.cluster.errors import InsufficientSpaceError, ServerUnreachableError

#: Never fill a server's disk closer than this (bytes).
DEFAULT_DISK_MARGIN = 100 * 2**20

#: Cost of a server this process has never chosen (PYME's value): lower than any recent use.
_NEVER_USED_COST = -100.0


def free_bytes(status: Mapping[str, Any] | None) -> int | None:
    """``Disk.free`` from a ``/__status`` document, or None where it is missing."""
    try:
        return int(status["Disk"]["free"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def choose_server(candidates: Sequence[str], last_used: Mapping[str, float], now: float, *,
                  statuses: Mapping[str, Mapping[str, Any]] | None = None, need_bytes: int = 0,
                  margin: int = DEFAULT_DISK_MARGIN, exclude: Collection[str] = ()) -> str:
    """The least recently used candidate that is responsive and has room for ``need_bytes``.

    Ties keep the candidates' order (local servers come first).  Raises
    InsufficientSpaceError when space is what rules every server out, else
    ServerUnreachableError.
    """
    statuses = statuses or {}
    short_of_space = []
    eligible = []
    for url in candidates:
        if url in exclude:
            continue
        status = statuses.get(url)
        if status is not None and not status.get("Responsive", True):
            continue
        free = free_bytes(status)
        if free is not None and free < need_bytes + margin:
            short_of_space.append(f"{url} ({free / 2**20:.0f} MiB free)")
            continue
        eligible.append(url)
    if not eligible:
        if short_of_space:
            raise InsufficientSpaceError(
                f"no data server has room for {need_bytes} bytes plus a {margin / 2**20:.0f} MiB "
                f"margin: {', '.join(short_of_space)}")
        raise ServerUnreachableError(
            f"no responsive data server to write to (tried {', '.join(candidates) or 'none'})")
    return min(eligible, key=lambda url: last_used[url] - now if url in last_used else _NEVER_USED_COST)


class ServerChooser:
    """choose_server() with this process's memory of when it last used each server (thread-safe)."""

    def __init__(self, margin: int = DEFAULT_DISK_MARGIN):
        self.margin = margin
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()

    def choose(self, candidates: Sequence[str], *, statuses: Mapping[str, Mapping[str, Any]] | None = None,
               need_bytes: int = 0, exclude: Collection[str] = ()) -> str:
        with self._lock:
            now = time.monotonic()
            url = choose_server(candidates, self._last_used, now, statuses=statuses,
                                need_bytes=need_bytes, margin=self.margin, exclude=exclude)
            self._last_used[url] = now
            return url
