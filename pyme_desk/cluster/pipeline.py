"""Many PUTs pipelined on one TCP connection (protocol.md §3.3, ``put_files``).

Each request is ``PUT /<path> HTTP/1.1`` with ``Host``, ``Connection: keep-alive`` (the last
one ``Connection: close``) and ``Content-Length``; TCP_NODELAY is on.  All requests are
written without waiting, while a reader thread parses the responses as they arrive (so a
long batch cannot dead-lock with both sides' buffers full).  The caller gets the responses
in request order; on a socket error it also gets the error, and the files past the last
response are the ones to retry elsewhere.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import quote, urlsplit

import httptools

#: Coalesce small requests into writes of about this size.
_SEND_CHUNK = 256 * 1024


@dataclass
class PipelineResult:
    """``responses[i]`` is ``(status, body)`` for ``files[i]``; ``error`` ended the exchange early."""

    responses: list[tuple[int, bytes]] = field(default_factory=list)
    error: OSError | None = None


class _ResponseReader:
    """Feeds bytes from the socket to an HTTP response parser and keeps finished responses."""

    def __init__(self, sock: socket.socket, expected: int, result: PipelineResult):
        self._sock = sock
        self._expected = expected
        self._result = result
        self._body: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._result.responses.append((self._parser.get_status_code(), b"".join(self._body)))

    def run(self) -> None:
        try:
            while len(self._result.responses) < self._expected:
                data = self._sock.recv(65536)
                if not data:
                    raise ConnectionResetError(
                        f"server closed the connection after {len(self._result.responses)} "
                        f"of {self._expected} responses")
                self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._result.error = ConnectionError(f"malformed HTTP response: {e}")
        except OSError as e:
            self._result.error = e


def _request_head(netloc: str, path: str, length: int, last: bool, token: str | None) -> bytes:
    lines = [f"PUT /{quote(path, safe='/')} HTTP/1.1", f"Host: {netloc}",
             f"Connection: {'close' if last else 'keep-alive'}", f"Content-Length: {length}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def put_pipelined(base_url: str, files: Sequence[tuple[str, bytes]], *, token: str | None = None,
                  connect_timeout: float = 5.0, timeout: float = 30.0) -> PipelineResult:
    """PUT every ``(path, data)`` to the server at ``base_url`` over one connection."""
    result = PipelineResult()
    if not files:
        return result
    parts = urlsplit(base_url)
    try:
        sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=connect_timeout)
    except OSError as e:
        result.error = e
        return result
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        reader = _ResponseReader(sock, len(files), result)
        thread = threading.Thread(target=reader.run, name="pyme-desk-put-files", daemon=True)
        thread.start()
        try:
            pending = bytearray()
            for i, (path, data) in enumerate(files):
                pending += _request_head(parts.netloc, path, len(data), i == len(files) - 1, token)
                if len(data) < _SEND_CHUNK:
                    pending += data
                else:
                    sock.sendall(pending)
                    pending = bytearray()
                    sock.sendall(data)
                if len(pending) >= _SEND_CHUNK:
                    sock.sendall(pending)
                    pending = bytearray()
            if pending:
                sock.sendall(pending)
        except OSError as e:
            # The server may have answered (and closed) before reading everything; keep what it said.
            thread.join(timeout)
            if result.error is None and len(result.responses) < len(files):
                result.error = e
            return result
        thread.join(timeout + 1.0)
        if thread.is_alive() and result.error is None:
            result.error = TimeoutError(f"no complete answer from {base_url} within {timeout} s")
    return result
