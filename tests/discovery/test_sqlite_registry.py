"""The same-machine sqlite registry, checked against the table layout PYME reads."""
from __future__ import annotations

import logging
import sqlite3
import tempfile
import time

import pytest

from pyme_desk.discovery.sqlite_registry import RegistryError, ServiceRecord, SqliteRegistry


def test_file_lives_in_the_temp_dir_named_by_protocol():
    assert SqliteRegistry("_pyme-taskdist").path.name == "_pyme-taskdist.sqlite"
    assert str(SqliteRegistry().path.parent) == tempfile.gettempdir()


def test_round_trip_and_pyme_style_reader(tmp_path):
    reg = SqliteRegistry("_pyme-http", tmp_path)
    reg.register("PYMEDataServer [a]:h - PID:1", "127.0.0.1", 1111)
    reg.register("PYMEDataServer [b]:h - PID:2", "127.0.0.1", 2222)
    time.sleep(0.01)  # distinct creation_time for the re-registration below
    reg.register("PYMEDataServer [a]:h - PID:1", "127.0.0.1", 3333)

    services = reg.services()
    assert [(s.name, s.port) for s in services] == [
        ("PYMEDataServer [b]:h - PID:2", 2222), ("PYMEDataServer [a]:h - PID:1", 3333)]
    assert all(s.source == "sqlite" and s.url == f"http://127.0.0.1:{s.port}/" for s in services)

    # What a PYME process on the same machine does with the file.
    conn = sqlite3.connect(str(tmp_path / "_pyme-http.sqlite"))
    try:
        columns = [(c[1], c[2]) for c in conn.execute("PRAGMA table_info(dns)")]
        assert columns == [("name", "TEXT"), ("address", "TEXT"), ("port", "INTEGER"),
                           ("creation_time", "FLOAT"), ("URI", "TEXT")]
        names = sorted(r[0] for r in conn.execute("SELECT DISTINCT name FROM dns"))
        assert names == ["PYMEDataServer [a]:h - PID:1", "PYMEDataServer [b]:h - PID:2"]
        newest = conn.execute("SELECT address, port, URI FROM dns WHERE name=? ORDER BY creation_time DESC",
                              ("PYMEDataServer [a]:h - PID:1",)).fetchone()
        assert newest == ("127.0.0.1", 3333, "")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()

    reg.unregister("PYMEDataServer [a]:h - PID:1")
    assert [s.name for s in reg.services()] == ["PYMEDataServer [b]:h - PID:2"]


def test_reads_rows_written_by_pyme(tmp_path):
    conn = sqlite3.connect(str(tmp_path / "_pyme-http.sqlite"))
    conn.execute("CREATE TABLE dns (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)")
    conn.execute("INSERT INTO dns VALUES (?, ?, ?, ?, ?)", ("PYMEDataServer [x]:pc - PID:9", "127.0.0.1", 15348, 1.5, ""))
    conn.commit()
    conn.close()
    assert SqliteRegistry("_pyme-http", tmp_path).services() == [
        ServiceRecord("PYMEDataServer [x]:pc - PID:9", "127.0.0.1", 15348, "sqlite", 1.5)]


def test_missing_file_is_empty_and_not_created(tmp_path):
    reg = SqliteRegistry("_pyme-http", tmp_path)
    assert reg.services() == []
    assert reg.prune_dead() == []
    assert not reg.path.exists()


def test_prune_removes_only_dead_services(tmp_path, listener, closed_port):
    live = listener()
    reg = SqliteRegistry("_pyme-http", tmp_path)
    reg.register("alive", "127.0.0.1", live.getsockname()[1])
    reg.register("dead", "127.0.0.1", closed_port)
    reg.register("dead", "127.0.0.1", closed_port)

    t0 = time.monotonic()
    assert reg.prune_dead(timeout=0.5) == ["dead"]
    assert time.monotonic() - t0 < 2.0
    assert [s.name for s in reg.services()] == ["alive"]
    conn = sqlite3.connect(str(reg.path))
    try:
        assert conn.execute("SELECT COUNT(*) FROM dns WHERE name='dead'").fetchone()[0] == 0
    finally:
        conn.close()


def test_corrupt_file_reads_as_empty_and_refuses_writes(tmp_path, caplog):
    reg = SqliteRegistry("_pyme-http", tmp_path)
    reg.path.write_bytes(b"this is not a sqlite database at all" * 100)
    with caplog.at_level(logging.WARNING):
        assert reg.services() == []
        assert reg.prune_dead() == []
    assert str(reg.path) in caplog.text
    with pytest.raises(RegistryError, match="_pyme-http.sqlite"):
        reg.register("x", "127.0.0.1", 1)
    assert reg.path.read_bytes().startswith(b"this is not")
