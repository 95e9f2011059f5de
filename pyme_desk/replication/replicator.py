"""Keep every complete cluster file on at least N data servers.

Each scan is stateless, so an interrupted run resumes by simply scanning again:

1. walk the directory tree of every responsive data server (their own listings, protocol.md
   §2.4), giving for each file the servers that hold it and their sizes;
2. a file with fewer than N holders is copied when it is *complete*:

   * it is not inside a series still being spooled (a directory with ``metadata.json`` but
     no ``events.json`` on any server, i.e. SERIES without SERIES_COMPLETE);
   * it is not an ``.h5`` series the server lists as still being aggregated (no COMPLETE bit);
   * it has been quiet for ``quiet_s`` seconds: the holder's ``Last-Modified`` is that much
     older than its ``Date`` (both the server's clock).  Results files grow by
     ``__aggregate_*`` appends (``.h5r`` tables, text logs) and are flushed by the server
     within a second of each append, so a file that is still being appended to is never
     quiet for long; a copy made while appends go on would be a stale write-once snapshot.

3. a copy is made server to server, ``PUT <target>/<path>?MirrorSource=<holder URL>``, to the
   responsive server with the most free disk (``/__status`` ``Disk.free``) that lacks the
   file and has room for it, then verified: same size and same SHA-256 when both copies are
   read back.

Copies whose sizes differ between servers cannot be repaired here (files are write-once);
they are reported under ``mismatched``.  :meth:`Replicator.status` is a JSON-ready summary
for the node agent and the GUI.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.choice import DEFAULT_DISK_MARGIN, free_bytes
from pyme_desk.cluster.listing import (FILETYPE_SERIES, FILETYPE_SERIES_COMPLETE, ListingFormatError,
                                       parse_listing)

log = logging.getLogger(__name__)

#: (connect, read) time-out of listings, HEADs and verification reads (s)
REQUEST_TIMEOUT = (5.0, 60.0)
#: a mirror PUT answers only once the target has fetched the whole file: allow this rate at least
SLOWEST_COPY_RATE = 10e6  # bytes/s
#: under-replicated files listed in status(); the count is always exact
STATUS_LIST_LIMIT = 200


@dataclass
class _Inventory:
    """What the responsive servers hold: ``files[path][server] = size``, directory type bits."""

    files: dict[str, dict[str, int]] = field(default_factory=dict)
    dir_types: dict[str, int] = field(default_factory=dict)
    file_types: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def choose_targets(size: int, count: int, candidates: list[str], free: dict[str, int | None],
                   margin: int = DEFAULT_DISK_MARGIN) -> list[str]:
    """Up to ``count`` servers to receive a copy of ``size`` bytes: most free disk first.

    ``free`` (bytes per server, None when unknown: such a server is taken on trust, after the
    known ones) is reduced by what each chosen copy will use, so one scan spreads its copies.
    """
    chosen: list[str] = []
    for _ in range(count):
        fitting = [u for u in candidates if u not in chosen and (free.get(u) is None or free[u] >= size + margin)]
        if not fitting:
            break
        best = max(fitting, key=lambda u: -1 if free.get(u) is None else free[u])
        if free.get(best) is not None:
            free[best] -= size
        chosen.append(best)
    return chosen


class ReplicationError(Exception):
    """One copy failed; the message says which file, where and why."""


class Replicator:
    """Copies under-replicated complete files between a cluster's data servers.

    ``client`` supplies the server list (explicit or discovered), their ``/__status`` and the
    cluster token.  ``copies`` is the target number of holders; ``quiet_s`` how long a file
    must have been unchanged; ``workers`` how many copies run at once.
    """

    def __init__(self, client: ClusterClient, *, copies: int = 2, quiet_s: float = 60.0, workers: int = 4,
                 disk_margin: int = DEFAULT_DISK_MARGIN):
        if copies < 1:
            raise ValueError("copies must be at least 1")
        self.client = client
        self.copies = copies
        self.quiet_s = quiet_s
        self.workers = workers
        self.disk_margin = disk_margin
        self._local = threading.local()
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {"copies": copies, "running": False, "scans": 0,
                                        "copied_files": 0, "copied_bytes": 0, "last_scan": None,
                                        "in_progress": []}

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict:
        """A JSON-ready snapshot: totals, the last scan's findings, copies in progress."""
        with self._lock:
            snapshot = dict(self._status)
            snapshot["in_progress"] = list(self._status["in_progress"])
            return snapshot

    def _update(self, **values: Any) -> None:
        with self._lock:
            self._status.update(values)

    # -- the loop --------------------------------------------------------------------------------

    def run(self, interval: float, stop: threading.Event) -> None:
        """Scan every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.scan_once()
            except Exception:  # a scan must never end the service; it is retried next time
                log.exception("replication scan failed")
            stop.wait(interval)

    def scan_once(self) -> dict:
        """One pass: find under-replicated files, copy the complete ones; returns the scan report."""
        started = time.time()
        self._update(running=True)
        try:
            report = self._scan()
        finally:
            self._update(running=False)
        report["started"] = started
        report["finished"] = time.time()
        with self._lock:
            self._status["scans"] += 1
            self._status["last_scan"] = report
        return report

    def _scan(self) -> dict:
        statuses = {s["URL"]: s for s in self.client.get_status()}
        alive = [url for url in self.client.servers() if statuses.get(url, {}).get("Responsive")]
        inventory = self._inventory(alive)
        free = {url: free_bytes(statuses[url]) for url in alive}
        # files a data server still appends to (pyme-desk servers list them in __status)
        appending = {path for url in alive
                     for path in (statuses[url].get("Desk") or {}).get("OpenForAppend", ())}
        waiting: list[dict] = []
        mismatched: list[dict] = []
        to_copy: list[tuple[str, int, list[str], str]] = []  # path, size, holders, target
        replicated = 0
        for path, held in sorted(inventory.files.items()):
            if len(set(held.values())) > 1:
                mismatched.append({"path": path, "sizes": dict(held)})
                continue
            if len(held) >= self.copies:
                replicated += 1
                continue
            size = next(iter(held.values()))
            reason = ("the data server is still appending to it" if path in appending
                      else self._not_ready(path, inventory, list(held)))
            if reason is None:
                targets = choose_targets(size, self.copies - len(held), [u for u in alive if u not in held],
                                         free, self.disk_margin)
                if len(targets) < self.copies - len(held):
                    reason = (f"no server with {size / 2**20:.1f} MiB free (plus margin) "
                              f"lacks it ({len(alive)} responsive)")
                for target in targets:
                    to_copy.append((path, size, list(held), target))
            if reason is not None:
                waiting.append({"path": path, "copies": len(held), "reason": reason})
        copied, failed = self._copy_all(to_copy)
        under = waiting + [{"path": p, "copies": len(inventory.files[p]), "reason": why} for p, why in failed]
        under.sort(key=lambda item: item["path"])
        return {"servers": {url: {"responsive": url in alive, "free": free.get(url)} for url in statuses},
                "files": len(inventory.files), "replicated": replicated,
                "copied": copied, "under_replicated_count": len(under),
                "under_replicated": under[:STATUS_LIST_LIMIT], "mismatched": mismatched[:STATUS_LIST_LIMIT],
                "errors": inventory.errors}

    # -- finding the files -----------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
        return session

    def _inventory(self, servers: list[str]) -> _Inventory:
        inventory = _Inventory()
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            walks = {url: pool.submit(self._walk, url) for url in servers}
        for url, future in walks.items():
            files, dirs, file_types, errors = future.result()
            for path, size in files.items():
                inventory.files.setdefault(path, {})[url] = size
            for path, bits in dirs.items():
                inventory.dir_types[path] = inventory.dir_types.get(path, 0) | bits
            for path, bits in file_types.items():
                inventory.file_types[path] = inventory.file_types.get(path, 0) | bits
            inventory.errors += errors
        return inventory

    def _walk(self, server: str):
        """Every file of one server: ({path: size}, {dir: type}, {file: type}, [errors])."""
        files: dict[str, int] = {}
        dirs: dict[str, int] = {}
        file_types: dict[str, int] = {}
        errors: list[str] = []
        pending = [""]
        while pending:
            directory = pending.pop()
            url = server + quote(directory, safe="/") + ("/" if directory else "")
            try:
                r = self._session().get(url, timeout=REQUEST_TIMEOUT)
                listing = parse_listing(r.content) if r.status_code == 200 else None
            except (requests.RequestException, ListingFormatError) as e:
                errors.append(f"{url}: {e}")
                continue
            if listing is None:
                continue  # vanished between listings
            for name, entry in listing.items():
                path = f"{directory}/{name}" if directory else name
                if name.endswith("/"):
                    dirs[path[:-1]] = entry.type
                    pending.append(path[:-1])
                else:
                    files[path] = entry.size
                    file_types[path] = entry.type
        return files, dirs, file_types, errors

    def _not_ready(self, path: str, inventory: _Inventory, holders: list[str]) -> str | None:
        """Why ``path`` must not be copied yet, or None when it is complete."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            bits = inventory.dir_types.get("/".join(parts[:i]), 0)
            if bits & FILETYPE_SERIES and not bits & FILETYPE_SERIES_COMPLETE:
                return f"series {'/'.join(parts[:i])} is still being written (no events.json yet)"
        bits = inventory.file_types.get(path, 0)
        if path.endswith(".h5") and bits & FILETYPE_SERIES and not bits & FILETYPE_SERIES_COMPLETE:
            return "the data server is still aggregating this series"
        age = self._quiet_for(holders[0] + quote(path, safe="/"))
        if age is None:
            return "cannot tell when it last changed"
        if age < self.quiet_s:
            return f"changed {age:.0f} s ago; waiting until it has been quiet for {self.quiet_s:.0f} s"
        return None

    def _quiet_for(self, url: str) -> float | None:
        """Seconds since the file last changed, by the holder's clock (None if it won't say)."""
        try:
            r = self._session().head(url, timeout=REQUEST_TIMEOUT)
            if r.status_code != 200:
                return None
            return (parsedate_to_datetime(r.headers["Date"])
                    - parsedate_to_datetime(r.headers["Last-Modified"])).total_seconds()
        except (requests.RequestException, KeyError, TypeError, ValueError):
            return None

    # -- copying ---------------------------------------------------------------------------------

    def _copy_all(self, jobs: list[tuple[str, int, list[str], str]]) -> tuple[int, list[tuple[str, str]]]:
        """Run the copies; returns (number done, [(path, reason) for each failure])."""
        if not jobs:
            return 0, []
        done = 0
        failed: list[tuple[str, str]] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="replicate") as pool:
            futures = [(job, pool.submit(self._copy, *job)) for job in jobs]
            for (path, size, _holders, target), future in futures:
                try:
                    future.result()
                except ReplicationError as e:
                    log.warning("%s", e)
                    failed.append((path, str(e)))
                    continue
                done += 1
        return done, failed

    def _copy(self, path: str, size: int, holders: list[str], target: str) -> None:
        job = {"path": path, "to": target, "size": size}
        with self._lock:
            self._status["in_progress"].append(job)
        try:
            source = holders[0] + quote(path, safe="/")
            copy = target + quote(path, safe="/")
            headers = {"Authorization": f"Bearer {self.client.token}"} if self.client.token else {}
            try:
                r = self._session().put(f"{copy}?MirrorSource={quote(source, safe='')}", data=b"",
                                        headers=headers,
                                        timeout=(REQUEST_TIMEOUT[0], 60.0 + size / SLOWEST_COPY_RATE))
            except requests.RequestException as e:
                raise ReplicationError(f"copy of {path} to {target} failed: {e}") from None
            if r.status_code != 200:
                raise ReplicationError(f"copy of {path} to {target} refused: HTTP {r.status_code} {r.text[:200]}")
            self._verify(path, source, copy, size)
            log.info("copied %s to %s (%d bytes)", path, target, size)
            with self._lock:
                self._status["copied_files"] += 1
                self._status["copied_bytes"] += size
        finally:
            with self._lock:
                self._status["in_progress"].remove(job)

    def _verify(self, path: str, source: str, copy: str, size: int) -> None:
        with ThreadPoolExecutor(2) as pool:
            digests = list(pool.map(self._digest, (source, copy)))
        (source_size, source_hash), (copy_size, copy_hash) = digests
        if not (source_size == copy_size == size) or source_hash != copy_hash:
            raise ReplicationError(f"copy of {path} at {copy} does not match its source "
                                   f"({copy_size} vs {source_size} bytes, sha256 {copy_hash[:12]} vs "
                                   f"{source_hash[:12]}); it is write-once, remove it on that server by hand")

    def _digest(self, url: str) -> tuple[int, str]:
        """(size, sha256 hex) of a file, read as a stream."""
        digest = hashlib.sha256()
        size = 0
        try:
            with self._session().get(url, stream=True, timeout=REQUEST_TIMEOUT) as r:
                if r.status_code != 200:
                    raise ReplicationError(f"cannot read {url} back: HTTP {r.status_code}")
                for chunk in r.iter_content(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except requests.RequestException as e:
            raise ReplicationError(f"cannot read {url} back: {e}") from None
        return size, digest.hexdigest()
