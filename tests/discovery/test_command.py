"""``pyme-desk discover``: in process and as a real subprocess, zeroconf off."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyme_desk.config import Config
from pyme_desk.discovery import command
from pyme_desk.discovery.sqlite_registry import SqliteRegistry
from pyme_desk.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def parse(*argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def registered(listener):
    """One dummy data server listening on loopback and registered in the default sqlite registry."""
    server = listener()
    name = f"PYMEDataServer [cmdtest]:pc - PID:{os.getpid()}"
    reg = SqliteRegistry("_pyme-http")
    reg.register(name, "127.0.0.1", server.getsockname()[1])
    yield name, f"http://127.0.0.1:{server.getsockname()[1]}/"
    reg.unregister(name)


def test_json_listing_in_process(registered, capsys):
    name, url = registered
    assert command.run(parse("--no-zeroconf", "--json", "--filter", "cmdtest"), Config()) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["url"], s["source"]) for s in listed] == [(name, url, "sqlite")]


def test_text_listing_includes_static_servers_from_config(registered, listener, capsys):
    name, url = registered
    static = f"http://127.0.0.1:{listener().getsockname()[1]}/"
    config = Config(values={"desk-static-dataservers": [static]})
    assert command.run(parse("--no-zeroconf", "--filter", "cmdtest"), config) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{name}\t{url}\tsqlite", f"{static}\t{static}\tstatic"]


def test_nothing_found_says_so(capsys):
    assert command.run(parse("--no-zeroconf", "--filter", "no-such-cluster"), Config()) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no _pyme-http services found" in captured.err


def test_bad_static_url_is_a_usage_error():
    with pytest.raises(UsageError, match="desk-static-dataservers|http://<host>:<port>/"):
        command.run(parse("--no-zeroconf"), Config(values={"desk-static-dataservers": ["ftp://x/"]}))


def test_discover_subprocess_json(registered):
    name, url = registered
    proc = subprocess.run([sys.executable, "-m", "pyme_desk", "discover", "--no-zeroconf", "--json",
                           "--filter", "cmdtest"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [(s["name"], s["url"], s["source"], s["address"]) for s in listed] == [
        (name, url, "sqlite", "127.0.0.1")]
