"""Fixtures for discovery tests: real TCP listeners on loopback and a port known to be closed."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def listener():
    """Open listening sockets on 127.0.0.1 (port 0); all are closed after the test."""
    opened: list[socket.socket] = []

    def open_listener() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        opened.append(s)
        return s

    yield open_listener
    for s in opened:
        s.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port that was just opened and closed, so nothing answers on it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    s.close()
    return port
