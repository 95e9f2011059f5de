"""The data server as a real subprocess: start-up, registry, clean shutdown, kill -9 mid-PUT."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import start_service


def start_server(root: Path, tmp_path: Path, *extra: str, env=None):
    return start_service(tmp_path, "dataserver", "--root", str(root), "--port", "0", *extra, env=env)


def registry_names() -> list[str]:
    db = Path(tempfile.gettempdir()) / "_pyme-http.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM dns")]


def test_cli_serves_registers_and_stops_cleanly(data_root, tmp_path):
    proc, info = start_server(data_root, tmp_path, "--advertise", "local", "--filter", "testcluster")
    try:
        assert info["pid"] == proc.pid and info["url"] == f"http://127.0.0.1:{info['port']}/"
        assert requests.put(info["url"] + "s/x.bin", data=b"abc", timeout=5).status_code == 200
        names = registry_names()
        assert any(n.startswith("PYMEDataServer [testcluster]:") and n.endswith(f"PID:{proc.pid}")
                   for n in names), names
        assert requests.get(info["url"] + "__status", timeout=5).json()["Port"] == info["port"]
    finally:
        if os.name == "nt":
            proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
    assert b"ready at" in out
    assert not any(n.endswith(f"PID:{proc.pid}") for n in registry_names())
    # logs live outside the served tree
    assert (tmp_path / "logs" / "dataserver.log").exists()
    assert sorted(p.name for p in data_root.iterdir()) == [".pyme-desk-tmp", "s"]


def test_kill_mid_put_leaves_no_partial_file(data_root, tmp_path):
    proc, info = start_server(data_root, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as s:
            s.sendall(b"PUT /k/frame00000.pzf HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
            s.sendall(b"x" * 2_000_000)
            time.sleep(0.3)
            proc.kill()
            proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert not (data_root / "k" / "frame00000.pzf").exists()
    # the next start clears the leftovers and the name is free
    proc, info = start_server(data_root, tmp_path)
    try:
        assert list((data_root / ".pyme-desk-tmp").iterdir()) == []
        assert requests.put(info["url"] + "k/frame00000.pzf", data=b"ok", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_bad_arguments_exit_2_with_one_line(data_root, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "dataserver", "--root", str(data_root),
                        "--port", "99999"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "port" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "dataserver", "--root", str(data_root),
                        "--bind", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "token" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "dataserver", "--no-such-flag"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_port_in_use_is_a_clear_error(data_root, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "pyme_desk", "dataserver", "--root", str(data_root),
                            "--port", str(port), "--advertise", "none", "--log-dir", str(tmp_path / "l")],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs to run as root to test the refusal")
def test_refuses_to_run_as_root(data_root):
    env = {k: v for k, v in os.environ.items() if k != "PYME_DESK_ALLOW_ROOT"}
    r = subprocess.run([sys.executable, "-m", "pyme_desk", "dataserver", "--root", str(data_root)],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 2 and "root" in r.stderr


def test_refuse_root_in_process(monkeypatch):
    from pyme_desk.errors import UsageError, refuse_root

    if not hasattr(os, "geteuid"):
        pytest.skip("no uids on this platform")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("PYME_DESK_ALLOW_ROOT", raising=False)
    with pytest.raises(UsageError, match="root"):
        refuse_root("data server")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    refuse_root("data server")


def test_sigterm_finishes_the_write_in_flight(data_root, tmp_path):
    if os.name == "nt":
        pytest.skip("POSIX signal; Windows uses CTRL_BREAK_EVENT (covered by the handler test)")
    proc, info = start_server(data_root, tmp_path)
    body = os.urandom(4_000_000)
    try:
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=10) as s:
            s.sendall(b"PUT /f/inflight.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body))
            s.sendall(body[:1_000_000])
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            s.sendall(body[1_000_000:])
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert (data_root / "f" / "inflight.bin").read_bytes() == body
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
