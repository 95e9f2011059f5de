"""One persistent, pipelined HTTP/1.1 PUT connection to one data server (protocol.md §4.3).

A :class:`ServerStream` owns a raw TCP socket (TCP_NODELAY) to a data server.  Its send
thread writes ``PUT /<path> HTTP/1.1`` requests (``Host``, ``Connection: keep-alive``,
``Content-Length``, optionally ``Authorization: Bearer``) back to back without waiting for
answers; its reader thread parses the answers as they arrive and matches them, in order, to
the requests in flight.  Every submitted :class:`PutItem` gets exactly one call of its
``on_done(item, server, status, reason)``: ``status`` is the HTTP status, or None when the
request could not be completed (connection lost, time-out, server dead), with ``reason``
saying why.

When the connection breaks, the requests in flight are reported as failed and the stream
reconnects for the next request; when it cannot reconnect (or breaks again and again
without a single answer in between) the stream is *dead*: it reports everything queued as
failed and refuses new items (``submit`` returns False) so the caller can go elsewhere.
"""
from __future__ import annotations

import collections
import logging
import queue
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import httptools

log = logging.getLogger(__name__)

#: Bodies smaller than this are sent in the same write as their request head.
_COALESCE = 64 * 1024
#: Connection losses in a row, without one answer between them, after which a server is dead.
MAX_CONSECUTIVE_LOSSES = 3
#: How often the reader wakes up to check for requests that waited too long for an answer.
_POLL_S = 0.25


@dataclass(eq=False)
class PutItem:
    """One PUT: the cluster ``path`` (no leading ``/``), its ``body``, and who to tell."""

    path: str
    body: bytes
    on_done: Callable[["PutItem", str, int | None, str], None]
    tag: Any = None
    #: servers that already failed this item (kept by the caller for re-routing)
    tried: set[str] = field(default_factory=set)
    sent_at: float = 0.0


class _Connection:
    """A socket plus the answers it still owes, in request order."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.in_flight: collections.deque[PutItem] = collections.deque()
        self.broken = False
        self.parser = None  # set by the reader


class ServerStream:
    """A pipelined PUT connection to the data server at ``url`` (``http://host:port/``).

    ``timeout`` (s) bounds a blocked send and the wait for the oldest answer;
    ``connect_timeout`` bounds each connect.  ``on_dead(url, reason)`` is called once, from a
    stream thread, when the stream gives the server up.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0,
                 connect_timeout: float = 5.0,
                 on_dead: Callable[[str, str], None] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"data server URL must look like http://host:port/, not {url!r}")
        self.url = url
        self._address = (parts.hostname, parts.port or 80)
        self._netloc = parts.netloc
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._on_dead = on_dead
        self._queue: queue.Queue[PutItem | None] = queue.Queue()
        self._lock = threading.Lock()
        self._conn: _Connection | None = None
        self._losses = 0
        self._dead_reason: str | None = None
        self._closing = False
        self._aborted: str | None = None
        self._sender = threading.Thread(target=self._send_loop, name=f"spool-send {self._netloc}",
                                        daemon=True)
        self._readers: list[threading.Thread] = []
        self._sender.start()

    # -- public --------------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._dead_reason is None

    @property
    def dead_reason(self) -> str | None:
        return self._dead_reason

    def submit(self, item: PutItem) -> bool:
        """Queue ``item`` for sending; False (and nothing queued) if the stream is dead or closed."""
        with self._lock:
            if self._dead_reason is not None or self._closing:
                return False
            self._queue.put(item)
            return True

    def pending(self) -> int:
        """Requests queued or waiting for their answer."""
        with self._lock:
            conn = self._conn
            return self._queue.qsize() + (len(conn.in_flight) if conn else 0)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, wait up to ``timeout`` s for the answers, then close."""
        with self._lock:
            self._closing = True
            self._queue.put(None)
        self._sender.join(timeout)
        deadline = time.monotonic() + timeout
        while self.pending() and self.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        self.abort("stream closed")

    def abort(self, reason: str = "spooling aborted") -> None:
        """Close the socket now; everything queued or in flight is reported failed."""
        with self._lock:
            self._closing = True
            self._aborted = self._aborted or reason
            self._queue.put(None)
            conn = self._conn
        if conn is not None:
            self._connection_lost(conn, reason, final=True)
        self._fail_queue(reason)
        self._sender.join(5.0)
        for t in self._readers:
            t.join(5.0)

    # -- sending ---------------------------------------------------------------------------------

    def _head(self, item: PutItem) -> bytes:
        return (f"PUT /{quote(item.path, safe='/')} HTTP/1.1\r\nHost: {self._netloc}\r\n"
                f"Connection: keep-alive\r\nContent-Length: {len(item.body)}\r\n{self._auth}\r\n"
                ).encode("latin-1")

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            conn = None if self._aborted or self._dead_reason else self._connected()
            if conn is None:
                self._done(item, None, self._aborted or f"server dropped: {self._dead_reason}")
                continue
            with self._lock:
                if conn.broken:
                    stale = True
                else:
                    stale = False
                    item.sent_at = time.monotonic()
                    conn.in_flight.append(item)
            if stale:  # lost between connecting and now: try this item again on a new connection
                self._requeue_front(item)
                continue
            try:
                head = self._head(item)
                if len(item.body) < _COALESCE:
                    conn.sock.sendall(head + item.body)
                else:
                    conn.sock.sendall(head)
                    conn.sock.sendall(item.body)
            except OSError as e:
                self._connection_lost(conn, f"send failed: {_describe(e)}")

    def _requeue_front(self, item: PutItem) -> None:
        # queue.Queue has no push-front; a short detour through the mutex keeps the order.
        with self._queue.mutex:
            self._queue.queue.appendleft(item)
            self._queue.unfinished_tasks += 1
            self._queue.not_empty.notify()

    def _connected(self) -> _Connection | None:
        """The current connection, connecting first if there is none; None if the server is dead."""
        with self._lock:
            if self._conn is not None and not self._conn.broken:
                return self._conn
        try:
            sock = socket.create_connection(self._address, timeout=self.connect_timeout)
        except OSError as e:
            self._die(f"cannot connect: {_describe(e)}")
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        conn = _Connection(sock)
        with self._lock:
            if self._aborted:
                sock.close()
                return None
            self._conn = conn
        reader = threading.Thread(target=self._read_loop, args=(conn,), name=f"spool-read {self._netloc}",
                                  daemon=True)
        self._readers = [t for t in self._readers if t.is_alive()] + [reader]
        reader.start()
        return conn

    # -- receiving -------------------------------------------------------------------------------

    def _read_loop(self, conn: _Connection) -> None:
        reader = _ResponseParser(self, conn)
        sock = conn.sock
        try:
            while not conn.broken:
                ready, _, _ = select.select([sock], [], [], _POLL_S)
                if not ready:
                    self._check_overdue(conn)
                    continue
                data = sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("server closed the connection")
                reader.feed(data)
        except httptools.HttpParserError as e:
            self._connection_lost(conn, f"malformed HTTP answer: {e}")
        except (OSError, ValueError) as e:  # ValueError: select on a socket closed under us
            self._connection_lost(conn, _describe(e) if isinstance(e, OSError) else "connection closed")

    def _check_overdue(self, conn: _Connection) -> None:
        with self._lock:
            oldest = conn.in_flight[0].sent_at if conn.in_flight else None
        if oldest is not None and time.monotonic() - oldest > self.timeout:
            self._connection_lost(conn, f"no answer within {self.timeout:g} s")

    def _answered(self, conn: _Connection, status: int, body: bytes) -> None:
        with self._lock:
            if not conn.in_flight:
                item = None
            else:
                item = conn.in_flight.popleft()
                self._losses = 0
        if item is None:
            self._connection_lost(conn, f"unexpected HTTP {status} answer with no request pending")
            return
        self._done(item, status, "" if status == 200 else _reason(body))

    # -- failures --------------------------------------------------------------------------------

    def _connection_lost(self, conn: _Connection, reason: str, final: bool = False) -> None:
        with self._lock:
            if conn.broken:
                return
            conn.broken = True
            failed = list(conn.in_flight)
            conn.in_flight.clear()
            if self._conn is conn:
                self._conn = None
            if failed:
                self._losses += 1
            give_up = self._losses >= MAX_CONSECUTIVE_LOSSES
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a send blocked in the other thread
        except OSError:
            pass
        conn.sock.close()
        if failed and not final:
            log.warning("%s: connection lost (%s); %d request(s) unanswered", self.url, reason, len(failed))
        for item in failed:
            self._done(item, None, reason)
        if give_up and not final:
            self._die(f"connection lost {MAX_CONSECUTIVE_LOSSES} times in a row ({reason})")

    def _die(self, reason: str) -> None:
        with self._lock:
            if self._dead_reason is not None:
                return
            self._dead_reason = reason
            conn = self._conn
        log.warning("%s: giving the server up: %s", self.url, reason)
        if conn is not None:
            self._connection_lost(conn, reason, final=True)
        self._fail_queue(f"server dropped: {reason}")
        if self._on_dead is not None and not self._closing:
            self._on_dead(self.url, reason)

    def _fail_queue(self, reason: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                # keep the sender's stop signal for it to find
                if self._closing:
                    self._queue.put(None)
                    return
                continue
            self._done(item, None, reason)

    def _done(self, item: PutItem, status: int | None, reason: str) -> None:
        try:
            item.on_done(item, self.url, status, reason)
        except Exception:  # a bug in a callback must not kill the stream
            log.exception("on_done callback failed for %s", item.path)


class _ResponseParser:
    """httptools callbacks collecting each answer's status and body."""

    def __init__(self, stream: ServerStream, conn: _Connection):
        self._stream = stream
        self._conn = conn
        self._body: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._stream._answered(self._conn, self._parser.get_status_code(), b"".join(self._body))


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _reason(body: bytes) -> str:
    """The server's own explanation from an error body (JSON ``{"error": ...}`` or text)."""
    import json

    try:
        data = json.loads(body)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except (ValueError, UnicodeDecodeError):
        pass
    return body[:200].decode("utf-8", "replace").strip() or "no reason given"
