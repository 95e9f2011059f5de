"""The same-machine name service: a small sqlite file that PYME processes also read and write.

Processes on one machine find each other without mDNS by writing a row per service into
``<tempdir>/<protocol>.sqlite`` (protocol.md §1.5).  The file layout is fixed by PYME: one table
``dns (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)``; registering
appends a row, looking a name up takes its newest row, unregistering deletes every row of the
name.

Many processes share the file, so every operation opens its own short-lived connection with a
busy time-out and keeps sqlite's default (rollback) journal: PYME's readers do not expect WAL.
A file that is not a database is logged and read as an empty registry; writing to it raises
:class:`RegistryError` with a message naming the file.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

#: The table PYME creates and reads, column for column.
CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS dns "
                "(name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)")

#: How long one operation waits for another process's lock on the file.
BUSY_TIMEOUT_S = 5.0

#: The most TCP probes run at once.
MAX_PARALLEL_PROBES = 32


@dataclass(frozen=True)
class ServiceRecord:
    """One advertised service, whatever told us about it.

    ``source`` is ``"sqlite"``, ``"zeroconf"`` or ``"static"``; ``creation_time`` is the Unix time
    the service was registered (sqlite) or first seen (zeroconf, static).
    """

    name: str
    address: str
    port: int
    source: str
    creation_time: float = 0.0

    @property
    def url(self) -> str:
        """The service's base URL as PYME clients form it: ``http://<address>:<port>/``."""
        return f"http://{self.address}:{self.port}/"

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


class RegistryError(Exception):
    """The registry file cannot be written; the message names the file and the reason."""


def default_registry_path(protocol: str, directory: str | Path | None = None) -> Path:
    """``<directory or tempfile.gettempdir()>/<protocol>.sqlite``."""
    return Path(directory if directory is not None else tempfile.gettempdir()) / f"{protocol}.sqlite"


def port_answers(address: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to ``address:port`` is accepted within ``timeout`` seconds."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def probe_endpoints(endpoints: Iterable[tuple[str, int]], timeout: float) -> dict[tuple[str, int], bool]:
    """Probe every endpoint concurrently; maps each to whether its port answered."""
    unique = list(dict.fromkeys(endpoints))
    if not unique:
        return {}
    workers = min(MAX_PARALLEL_PROBES, len(unique))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyme-desk-probe") as pool:
        results = pool.map(lambda ep: port_answers(ep[0], ep[1], timeout), unique)
        return dict(zip(unique, results))


class SqliteRegistry:
    """Read and write the PYME sqlite name service for one protocol (``_pyme-http``, ...)."""

    def __init__(self, protocol: str = "_pyme-http", directory: str | Path | None = None):
        self.protocol = protocol
        self.path = default_registry_path(protocol, directory)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, and is always closed."""
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def _write(self, sql: str, params: tuple) -> None:
        try:
            with self._connection() as conn:
                conn.execute(CREATE_TABLE)
                conn.execute(sql, params)
        except sqlite3.Error as e:
            raise RegistryError(f"cannot update the service registry {self.path}: {e}") from None

    def register(self, name: str, address: str, port: int) -> None:
        """Add a row for ``name`` at ``address:port`` (older rows of the same name stay, as in PYME)."""
        self._write("INSERT INTO dns (name, address, port, creation_time, URI) VALUES (?, ?, ?, ?, ?)",
                    (name, address, int(port), time.time(), ""))

    def unregister(self, name: str) -> None:
        """Delete every row of ``name``."""
        self._write("DELETE FROM dns WHERE name = ?", (name,))

    def _records(self) -> list[ServiceRecord]:
        """Every well-formed row, oldest first; an unreadable file is logged and reads as empty."""
        if not self.path.exists():
            return []
        try:
            with self._connection() as conn:
                rows = conn.execute(
                    "SELECT name, address, port, creation_time FROM dns ORDER BY creation_time").fetchall()
        except sqlite3.Error as e:
            log.warning("ignoring the service registry %s: %s", self.path, e)
            return []
        records = []
        for name, address, port, created in rows:
            try:
                records.append(ServiceRecord(str(name), str(address), int(port), "sqlite", float(created or 0.0)))
            except (TypeError, ValueError):
                log.debug("skipping malformed row %r in %s", (name, address, port), self.path)
        return records

    def services(self) -> list[ServiceRecord]:
        """The newest row of every registered name, oldest registration first."""
        newest: dict[str, ServiceRecord] = {}
        for record in self._records():
            newest.pop(record.name, None)  # re-insert so the order follows the newest row
            newest[record.name] = record
        return list(newest.values())

    def prune_dead(self, timeout: float = 0.2) -> list[str]:
        """Delete the rows whose port does not accept a TCP connection; returns the names removed.

        All distinct endpoints are probed at once, so this takes about ``timeout`` seconds however
        many rows there are.  Rows added after the probes started are kept.
        """
        started = time.time()
        records = self._records()
        alive = probe_endpoints((r.endpoint for r in records), timeout)
        dead = {ep for ep, ok in alive.items() if not ok}
        self.remove_endpoints(dead, registered_before=started)
        return sorted({r.name for r in records if r.endpoint in dead})

    def remove_endpoints(self, endpoints: Iterable[tuple[str, int]], registered_before: float) -> None:
        """Delete the rows at these ``(address, port)`` endpoints registered before the given Unix time."""
        params = [(a, p, registered_before) for a, p in endpoints]
        if not params or not self.path.exists():
            return
        try:
            with self._connection() as conn:
                conn.executemany("DELETE FROM dns WHERE address = ? AND port = ? AND creation_time <= ?",
                                 params)
        except sqlite3.Error as e:
            log.warning("cannot remove dead services from %s: %s", self.path, e)
