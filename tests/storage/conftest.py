import socket

import pytest
import requests

from pyme_desk.storage.server import DataServer
from pyme_desk.web.errors import HTTPError


@pytest.fixture
def server(data_root):
    with DataServer(data_root, status_interval=0.2, h5r_flush_interval=0.1) as srv:
        yield srv


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the server and return everything it answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        if not read_until_close:
            return b""
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            pass
        return b"".join(chunks)


def parse_responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Split a raw byte stream of HTTP/1.1 responses into (status, body) pairs, in order."""
    out = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = raw[pos:end].split(b"\r\n")
        status = int(head[0].split()[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append((status, raw[end + 4:end + 4 + length]))
        pos = end + 4 + length
    return out


def status_lines(raw: bytes) -> list[int]:
    """The status codes of all HTTP responses in a raw byte stream, in order."""
    return [status for status, _ in parse_responses(raw)]


def status_of(call, *args) -> int:
    """The HTTP status of the HTTPError that ``call(*args)`` raises (the test fails if none)."""
    with pytest.raises(HTTPError) as err:
        call(*args)
    return err.value.status
