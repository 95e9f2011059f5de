"""Streaming file bodies to and from data servers, so the WebDAV share never holds a file in memory.

Reads are a plain ``GET`` whose body is handed out in blocks as the WebDAV client takes them.
Writes are a ``PUT`` whose body is sent as the WebDAV client's upload arrives (the data
server needs its ``Content-Length`` up front, protocol.md §2.5).  The data server stores the
body atomically (temp file + rename), so an upload that breaks off leaves nothing behind.
"""
from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
from urllib.parse import urlsplit

from pyme_desk.cluster.errors import (ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                                      ServerError, ServerUnreachableError)

BLOCK = 1 << 20
#: blocks held between the two connections of one transfer (so at most 4 MiB in memory)
RELAY_DEPTH = 4


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


class _Closed(Exception):
    """The other side of a relay went away."""


class _Relay:
    """A bounded queue of blocks between two threads, which either side can fail or close.

    It lets the network reads of one connection overlap the writes to the other, holding at
    most ``depth`` blocks; ``put``/``get`` raise the recorded error (or _Closed) instead of
    blocking forever once the other side has stopped.
    """

    def __init__(self, depth: int = RELAY_DEPTH):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stopped = threading.Event()
        self.error: BaseException | None = None

    def put(self, item) -> None:
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self):
        while True:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                self._check()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._stopped.set()

    def close(self) -> None:
        self._stopped.set()

    def _check(self) -> None:
        if self._stopped.is_set():
            raise self.error if self.error is not None else _Closed()


def _shutdown(conn: http.client.HTTPConnection) -> None:
    """Close a connection, waking a thread blocked on its socket."""
    if conn.sock is not None:
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()


class Download:
    """The body of ``GET url``, read ahead by a helper thread in blocks; ``close()`` ends it."""

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
        self._relay = _Relay()
        self._pending = b""
        self._eof = False
        threading.Thread(target=self._fill, name="webdav-download", daemon=True).start()

    def _fill(self) -> None:
        try:
            while True:
                block = self._response.read(BLOCK)
                self._relay.put(block)
                if not block:
                    return
        except _Closed:
            return
        except (OSError, http.client.HTTPException) as e:
            self._relay.fail(ServerUnreachableError(f"GET {self.url}: connection lost: {e}"))

    def read(self, size: int = BLOCK) -> bytes:
        if not self._pending and not self._eof:
            self._pending = self._relay.get()
            self._eof = not self._pending
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def close(self) -> None:
        self._relay.close()
        _shutdown(self._conn)


class Upload:
    """``PUT url`` of a body of ``length`` bytes, sent piecewise with ``write()``.

    The connection is opened at once (ServerUnreachableError if that fails, before any byte
    of the body is consumed, so the caller can try another server).  A helper thread sends
    the blocks, so receiving the next one overlaps sending this one.  ``finish()`` returns
    once the server has stored the file and raises if it refused; ``abort()`` drops the
    connection, and the data server then discards what it received.
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
        self._relay = _Relay()
        self._sender = threading.Thread(target=self._send, name="webdav-upload", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        try:
            while (block := self._relay.get()) is not None:
                self._conn.send(block)
        except _Closed:
            return
        except OSError as e:
            self._relay.fail(ServerUnreachableError(f"PUT {self.url}: connection lost: {e}"))

    def write(self, data: bytes) -> None:
        if self.sent + len(data) > self.length:
            raise ClusterError(f"PUT {self.url}: more data than the announced {self.length} bytes")
        self._relay.put(data)
        self.sent += len(data)

    def finish(self) -> None:
        """Wait for the server's answer; ClusterFileExistsError / ServerError if it refused."""
        if self.sent != self.length:
            self.abort()
            raise ClusterError(f"PUT {self.url}: upload ended after {self.sent} of {self.length} bytes")
        self._relay.put(None)
        self._sender.join()
        if self._relay.error is not None:
            self._conn.close()
            raise self._relay.error
        try:
            response = self._conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnreachableError(f"PUT {self.url}: no answer: {e}") from None
        finally:
            self._conn.close()
        if response.status == 405:
            raise ClusterFileExistsError(f"{self.url}: {_reason(response, body)}")
        if response.status != 200:
            raise ServerError(self.url, response.status, _reason(response, body))

    def abort(self) -> None:
        self._relay.close()
        _shutdown(self._conn)
