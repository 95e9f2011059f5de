"""Streaming file bodies to and from data servers, so the WebDAV share never holds a file in memory.

Reads are a plain ``GET`` whose body is handed out in blocks as the WebDAV client takes them.
Writes are a ``PUT`` whose body is sent as the WebDAV client's upload arrives (the data
server needs its ``Content-Length`` up front, protocol.md §2.5).  The data server stores the
body atomically (temp file + rename), so an upload that breaks off leaves nothing behind.
"""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from pyme_desk.cluster.errors import (ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                                      ServerError, ServerUnreachableError)

BLOCK = 1 << 20


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return cls(parts.hostname, parts.port, timeout=timeout), target


def _reason(response: http.client.HTTPResponse, body: bytes) -> str:
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "error" in doc:
            return str(doc["error"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip() or response.reason or f"HTTP {response.status}"


class Download:
    """The body of ``GET url``, read in blocks; ``close()`` ends the connection."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self._conn, target = _connection(url, timeout)
        try:
            self._conn.request("GET", target)
            self._response = self._conn.getresponse()
        except OSError as e:
            self._conn.close()
            raise ServerUnreachableError(f"GET {url}: {e}") from None
        if self._response.status != 200:
            body = self._response.read(4096)
            self._conn.close()
            if self._response.status == 404:
                raise ClusterFileNotFoundError(f"{url}: not found")
            raise ServerError(url, self._response.status, _reason(self._response, body))
        self.length = self._response.length

    def read(self, size: int = BLOCK) -> bytes:
        return self._response.read(size)

    def close(self) -> None:
        self._conn.close()


class Upload:
    """``PUT url`` of a body of ``length`` bytes, sent piecewise with ``write()``.

    The connection is opened at once (ServerUnreachableError if that fails, before any byte
    of the body is consumed, so the caller can try another server).  ``finish()`` returns once
    the server has stored the file and raises if it refused; ``abort()`` drops the connection,
    and the data server then discards what it received.
    """

    def __init__(self, url: str, length: int, *, token: str | None, timeout: float):
        self.url = url
        self.length = length
        self.sent = 0
        conn, target = _connection(url, timeout)
        try:
            conn.putrequest("PUT", target, skip_accept_encoding=True)
            conn.putheader("Content-Length", str(length))
            conn.putheader("Content-Type", "application/octet-stream")
            if token:
                conn.putheader("Authorization", f"Bearer {token}")
            conn.endheaders()
        except OSError as e:
            conn.close()
            raise ServerUnreachableError(f"PUT {url}: cannot reach data server: {e}") from None
        self._conn = conn

    def write(self, data: bytes) -> None:
        if self.sent + len(data) > self.length:
            raise ClusterError(f"PUT {self.url}: more data than the announced {self.length} bytes")
        try:
            self._conn.send(data)
        except OSError as e:
            raise ServerUnreachableError(f"PUT {self.url}: connection lost: {e}") from None
        self.sent += len(data)

    def finish(self) -> None:
        """Wait for the server's answer; ClusterFileExistsError / ServerError if it refused."""
        if self.sent != self.length:
            self.abort()
            raise ClusterError(f"PUT {self.url}: upload ended after {self.sent} of {self.length} bytes")
        try:
            response = self._conn.getresponse()
            body = response.read()
        except OSError as e:
            raise ServerUnreachableError(f"PUT {self.url}: no answer: {e}") from None
        finally:
            self._conn.close()
        if response.status == 405:
            raise ClusterFileExistsError(f"{self.url}: {_reason(response, body)}")
        if response.status != 200:
            raise ServerError(self.url, response.status, _reason(response, body))

    def abort(self) -> None:
        self._conn.close()
