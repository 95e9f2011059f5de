"""Directory listings in PYME's wire format (protocol.md §2.4), cached and kept current.

A listing is a JSON object ``{name: [type, size]}``: directories carry a trailing ``/`` in
the name, ``type`` is a bit field (DIRECTORY=1, SERIES=2, SERIES_COMPLETE=4) and ``size`` is
bytes for files and the number of entries for directories.  Unlike PYME, the DIRECTORY bit is
always set for directories, whichever way the listing was produced, and the completion marker
is always ``events.json``.

Extension (ours; PYME's servers ignore it and send everything): ``GET /<dir>/?first_frame=<i>``
leaves out the frames ``frameNNNNN.pzf`` numbered below ``i``.  Whoever follows a series as it
is spooled asks only for what is new, so following it costs the same at frame 100 and at frame
1,000,000 instead of fetching and parsing a listing that grows with every frame.

The cache keeps each directory's entries and rendered JSON.  Our own writes update it in
place (no rescan); a directory whose mtime changed behind our back (someone copied files in)
or whose entry is older than ``max_age`` seconds is rescanned.  A write that lands while that
directory is being rescanned is merged into the scan's result: directory times are coarse
(several writes share one), so a scan that missed it could not be told from a current one.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pyme_desk.storage.paths import PRIVATE_PREFIX

FILETYPE_NORMAL = 0
FILETYPE_DIRECTORY = 1
FILETYPE_SERIES = 2
FILETYPE_SERIES_COMPLETE = 4

#: names that JSON needs no escaping for: printable ASCII without quote or backslash
_PLAIN_NAME = re.compile(r'[ !#-\[\]-~]*\Z').match

SERIES_MARKER = "metadata.json"
COMPLETE_MARKER = "events.json"


def directory_flags(path: str | os.PathLike, names=None) -> tuple[int, int]:
    """(type, entry count) of a directory; ``names`` may pass an already-read listing."""
    if names is None:
        try:
            names = os.listdir(path)
        except OSError:
            return FILETYPE_DIRECTORY, 0
    names = [n for n in names if not n.startswith(PRIVATE_PREFIX)]
    flags = FILETYPE_DIRECTORY
    if SERIES_MARKER in names:
        flags |= FILETYPE_SERIES
    if COMPLETE_MARKER in names:
        flags |= FILETYPE_SERIES_COMPLETE
    return flags, len(names)


def file_flags(name: str, aggregating: bool = False) -> int:
    """An ``.h5`` file is a packed series; complete unless it is still being appended to."""
    if name.endswith(".h5"):
        return FILETYPE_SERIES if aggregating else FILETYPE_SERIES | FILETYPE_SERIES_COMPLETE
    return FILETYPE_NORMAL


def scan_directory(path: Path, is_aggregating=lambda p: False) -> dict[str, list[int]]:
    """Read a directory from disk into listing entries (unsorted)."""
    entries: dict[str, list[int]] = {}
    with os.scandir(path) as it:
        for e in it:
            name = e.name
            if name.startswith(PRIVATE_PREFIX):
                continue
            try:
                if e.is_dir():
                    flags, count = directory_flags(e.path)
                    entries[name + "/"] = [flags, count]
                else:
                    busy = name.endswith(".h5") and is_aggregating(e.path)
                    entries[name] = [file_flags(name, busy), e.stat().st_size]
            except OSError:
                continue  # vanished or unreadable between scandir and stat
    return entries


def render(entries: dict[str, list[int]]) -> bytes:
    """The listing JSON, names sorted case-insensitively as PYME does."""
    names = sorted(entries, key=str.lower)
    if all(_PLAIN_NAME(n) for n in names):  # nothing to escape: format directly (2x faster)
        return ("{" + ",".join(['"%s":[%d,%d]' % (n, *entries[n]) for n in names]) + "}").encode()
    return json.dumps({n: entries[n] for n in names}, separators=(",", ":")).encode()


def frame_name(index: int) -> str:
    """``frame00012.pzf``: a series' frame file (protocol.md §4.2; 100000 and up get six digits)."""
    return f"frame{index:05d}.pzf"


def _is_frame(name: str) -> bool:
    """``frame`` + at least five digits + ``.pzf`` (protocol.md §4.2)."""
    digits = name[5:-4]
    return name[:5] == "frame" and name[-4:] == ".pzf" and len(digits) >= 5 and digits.isascii() and digits.isdigit()


def frame_index(name: str) -> int | None:
    """The number of a frame file (``frame00012.pzf`` -> 12), None for any other name."""
    return int(name[5:-4]) if _is_frame(name) else None


def frames_from(entries: dict[str, Any], first: int) -> dict[str, Any]:
    """``entries`` without the frames (``frameNNNNN.pzf``) numbered below ``first``."""
    if first <= 0:
        return dict(entries)
    # Among frame names with the same number of digits, string order is number order, so most
    # names are decided by a string comparison before _is_frame() looks at them.
    cut = f"frame{first:05d}.pzf"
    width = len(cut)
    return {name: value for name, value in entries.items()
            if not ((len(name) < width or (len(name) == width and name < cut)) and _is_frame(name))}


class _Entry:
    __slots__ = ("mtime", "entries", "rendered", "scanned")

    def __init__(self, mtime: int, entries: dict) -> None:
        self.mtime = mtime
        self.entries = entries
        self.rendered: bytes | None = None
        self.scanned = time.monotonic()


class _Scans:
    """The scans of one directory in flight, and what our writes did there meanwhile."""
    __slots__ = ("count", "written", "subdir_changed")

    def __init__(self) -> None:
        self.count = 0
        self.written: dict[str, list[int]] = {}  # entries our writes set while the scans read
        self.subdir_changed = False  # a subdirectory gained a file: its count/flags may be stale


class ListingCache:
    """Per-directory listing cache; thread-safe; bounded to ``max_dirs`` directories."""

    def __init__(self, max_dirs: int = 1000, max_age: float = 30.0, is_aggregating=lambda p: False):
        self.max_dirs = max_dirs
        self.max_age = max_age
        self.is_aggregating = is_aggregating
        self._lock = threading.Lock()
        self._dirs: OrderedDict[str, _Entry] = OrderedDict()
        self._scanning: dict[str, _Scans] = {}

    def _busy(self, path: Path) -> bool:
        return path.name.endswith(".h5") and self.is_aggregating(os.fspath(path))

    def _current(self, key: str) -> _Entry | None:
        """The cached entry of directory ``key`` if it is current (call with the lock held)."""
        ent = self._dirs.get(key)
        if ent is None or ent.mtime != os.stat(key).st_mtime_ns or time.monotonic() - ent.scanned >= self.max_age:
            return None
        self._dirs.move_to_end(key)
        return ent

    def cached(self, path: Path) -> bytes | None:
        """The rendered listing if the cache holds a current one, else None (cheap: one stat)."""
        with self._lock:
            ent = self._current(os.fspath(path))
            if ent is None:
                return None
            if ent.rendered is None:
                ent.rendered = render(ent.entries)
            return ent.rendered

    def scan(self, path: Path) -> bytes:
        """Read ``path`` from disk, cache it and return the rendered listing."""
        return self._scan(path, rendered=True).rendered

    def _scan(self, path: Path, rendered: bool) -> _Entry:
        key = os.fspath(path)
        with self._lock:
            scans = self._scanning.setdefault(key, _Scans())
            scans.count += 1
        try:
            mtime = os.stat(key).st_mtime_ns
            entries = scan_directory(path, self.is_aggregating)
        except BaseException:
            with self._lock:
                self._done_scanning(key, scans)
            raise
        with self._lock:  # one critical section: no write may fall between merge and store
            self._done_scanning(key, scans)
            entries.update(scans.written)  # written while we scanned: the scan may have missed them
            ent = _Entry(mtime, entries)
            if scans.subdir_changed:
                ent.mtime = -1  # served once, rescanned next time
            self._dirs[key] = ent
            self._dirs.move_to_end(key)
            while len(self._dirs) > self.max_dirs:
                self._dirs.popitem(last=False)
        if rendered:
            ent.rendered = render(entries)
        return ent

    def _done_scanning(self, key: str, scans: _Scans) -> None:
        scans.count -= 1
        if scans.count == 0:
            del self._scanning[key]

    def listing(self, path: Path, first_frame: int | None = None) -> bytes:
        """Rendered JSON listing of ``path`` (raises OSError when it cannot be read); with
        ``first_frame``, without the frames numbered below it (not cached: it is small)."""
        if first_frame is None:
            cached = self.cached(path)
            return cached if cached is not None else self.scan(path)
        with self._lock:
            ent = self._current(os.fspath(path))
            entries = dict(ent.entries) if ent is not None else None
        if entries is None:  # fresh from disk; our writes may change the cached dict from now on
            ent = self._scan(path, rendered=False)
            with self._lock:
                entries = dict(ent.entries)
        return render(frames_from(entries, first_frame))

    def file_added(self, path: Path, is_dir: bool = False) -> None:
        """We created ``path`` (a new file, or a new directory with ``is_dir``): update in place.

        Its directory gains an entry; the grandparent's entry for that directory gains one in
        its count and, for the series markers, the SERIES/SERIES_COMPLETE flags.  Callers
        report directories made by ``mkdir -p`` top-down, one call each.
        """
        path = Path(path)
        directory = path.parent
        name = path.name + "/" if is_dir else path.name
        with self._lock:
            scans = self._scanning.get(os.fspath(directory.parent))
            if scans is not None:
                scans.subdir_changed = True
            self._set_entry(path, name, is_dir)
            parent = self._dirs.get(os.fspath(directory.parent))
            key = directory.name + "/"
            if parent is not None and key in parent.entries:
                flags, count = parent.entries[key]
                if name == SERIES_MARKER:
                    flags |= FILETYPE_SERIES
                elif name == COMPLETE_MARKER:
                    flags |= FILETYPE_SERIES_COMPLETE
                parent.entries[key] = [flags, count + 1]
                parent.rendered = None

    def file_changed(self, path: Path) -> None:
        """A file we append to changed size or state: refresh its entry."""
        path = Path(path)
        with self._lock:
            self._set_entry(path, path.name, False)

    def _set_entry(self, path: Path, name: str, is_dir: bool) -> None:
        """Our write of ``path`` (listed as ``name``): set its entry in the cached listing of its
        directory and tell that directory's scans in flight (call with the lock held)."""
        dkey = os.fspath(path.parent)
        ent = self._dirs.get(dkey)
        scans = self._scanning.get(dkey)
        if ent is None and scans is None:
            return
        try:
            value = [FILETYPE_DIRECTORY, 0] if is_dir else [file_flags(name, self._busy(path)), path.stat().st_size]
            if scans is not None:
                scans.written[name] = value
            if ent is not None:
                ent.mtime = os.stat(path.parent).st_mtime_ns
                ent.entries[name] = value
                ent.rendered = None
        except OSError:  # gone again: let the next listing read the disk
            self._dirs.pop(dkey, None)
