"""The rule server's journal: rules and task states in sqlite (WAL), so a restart resumes them.

One row per rule: its creation spec (JSON, written once), its counts and flags (JSON) and its
task arrays (status, retries, failure reason, owner; zlib-compressed).  A background
:class:`JournalWriter` takes what changed from the :class:`~pyme_desk.scheduler.rules.RuleBook`
every ``interval`` seconds and writes it in one transaction, so hand-ins never wait for the
disk; :meth:`JournalWriter.sync` waits for a write when a reply must not precede it (a new
rule).  A crash loses at most the last interval: tasks handed in during it run again, but
are still counted once.

The file is held with an exclusive lock while open, so two rule servers cannot share it.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import zlib
from pathlib import Path

import numpy as np

from pyme_desk.scheduler.rules import JournalBatch, RuleBook

log = logging.getLogger(__name__)

FORMAT = 1
#: the task arrays, in blob order, with their on-disk dtypes
ARRAYS = (("status", "u1", np.uint8), ("retries", "u1", np.uint8), ("reason", "u1", np.uint8),
          ("owner", "<i4", np.int32))


class JournalError(Exception):
    """The journal cannot be opened or read; the message says which file and why."""


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    return zlib.compress(b"".join(arrays[name].astype(disk).tobytes() for name, disk, _ in ARRAYS), 1)


def unpack_arrays(blob: bytes, size: int) -> dict[str, np.ndarray]:
    raw = zlib.decompress(blob)
    out, pos = {}, 0
    for name, disk, native in ARRAYS:
        out[name] = np.frombuffer(raw, disk, size, pos).astype(native)
        pos += size * np.dtype(disk).itemsize
    if pos != len(raw):
        raise ValueError("task arrays have the wrong length")
    return out


class Journal:
    """The sqlite file; one connection, used by one thread at a time (the writer's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=0.5, isolation_level=None,
                                        check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"cannot open the journal {self.path}: {e}") from None
        try:
            self.conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("journal %s: sqlite would not use WAL mode (%s)", self.path, mode)
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("BEGIN IMMEDIATE")  # takes (and, in exclusive mode, keeps) the lock
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS rules (rule_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
                              "spec TEXT NOT NULL, state TEXT, arrays BLOB)")
            row = self.conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT),))
            elif row[0] != str(FORMAT):
                raise JournalError(f"the journal {self.path} has format {row[0]}, this version reads {FORMAT}")
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            self.conn.close()
            if "locked" in str(e):
                raise JournalError(f"the journal {self.path} is in use by another rule server; "
                                   "give this one its own --journal file") from None
            raise JournalError(f"cannot use the journal {self.path}: {e}") from None
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise JournalError(f"the journal {self.path} is not a usable sqlite file: {e}") from None
        except JournalError:
            self.conn.close()
            raise

    def load(self) -> tuple[list[tuple[str, dict, dict, dict[str, np.ndarray]]], list[list], int]:
        """(rules in creation order as (id, spec, state, arrays), nodes, next sequence number)."""
        with self._lock:
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            rows = self.conn.execute("SELECT rule_id, spec, state, arrays FROM rules ORDER BY seq").fetchall()
        rules = []
        for rule_id, spec, state, blob in rows:
            try:
                state_d = json.loads(state)
                arrays = unpack_arrays(blob, int(state_d["size"])) if state_d["size"] else {}
                rules.append((rule_id, json.loads(spec), state_d, arrays))
            except (TypeError, ValueError, KeyError, zlib.error) as e:
                log.error("journal %s: skipping rule %s, its record is damaged (%s)", self.path, rule_id, e)
        nodes = json.loads(meta.get("nodes", "[]"))
        return rules, nodes, int(meta.get("next_seq", 1))

    def write(self, batch: JournalBatch) -> None:
        """Write one batch in one transaction."""
        states = [(json.dumps(state), pack_arrays(arrays), rid) for rid, (state, arrays) in batch.states.items()]
        with self._lock:
            c = self.conn
            c.execute("BEGIN")
            try:
                c.executemany("INSERT OR REPLACE INTO rules (rule_id, seq, spec) VALUES (?, ?, ?)",
                              [(rid, spec["seq"], json.dumps(spec)) for rid, spec in batch.specs.items()])
                c.executemany("UPDATE rules SET state=?, arrays=? WHERE rule_id=?", states)
                c.executemany("DELETE FROM rules WHERE rule_id=?", [(rid,) for rid in batch.removed])
                if batch.nodes is not None:
                    c.execute("INSERT OR REPLACE INTO meta VALUES ('nodes', ?)", (json.dumps(batch.nodes),))
                c.execute("INSERT OR REPLACE INTO meta VALUES ('next_seq', ?)", (str(batch.next_seq),))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class JournalWriter:
    """Writes the book's changes to the journal every ``interval`` s on its own thread."""

    def __init__(self, book: RuleBook, journal: Journal, interval: float = 0.2) -> None:
        self.book = book
        self.journal = journal
        self.interval = interval
        self._cond = threading.Condition()
        self._requested = 0  # sync requests made
        self._written = 0  # sync requests covered by a finished write
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rule journal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sync(self, timeout: float = 10.0) -> bool:
        """Write now and wait until everything changed before this call is on disk."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._written >= ticket or self._stopping, timeout)

    def stop(self) -> None:
        """Write what is left, then close the journal."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(30)
        self._flush()
        self.journal.close()

    def _run(self) -> None:
        failed = False
        while True:
            with self._cond:
                # after a failed write wait a full interval, even if a sync is waiting
                self._cond.wait_for(lambda: self._stopping or (self._requested > self._written and not failed),
                                    self.interval)
                if self._stopping:
                    return
                ticket = self._requested
            failed = not self._flush()
            if not failed:
                with self._cond:
                    self._written = max(self._written, ticket)
                    self._cond.notify_all()

    def _flush(self) -> bool:
        """Write what changed; False (and kept for the next try) when the write failed."""
        batch = self.book.take_journal_batch()
        if not batch:
            return True
        try:
            self.journal.write(batch)
        except (sqlite3.Error, OSError) as e:
            log.error("could not write the journal %s (will retry): %s", self.journal.path, e)
            self.book.requeue_batch(batch)
            return False
        return True
