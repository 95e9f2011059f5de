"""A small HTTP/1.1 server core on asyncio + httptools, shared by every pyme-desk server.

Why not a framework: measured on this machine kind (../shared/docs/http-servers.md), reading
request bodies into one reusable 1 MiB buffer (``asyncio.BufferedProtocol``) and sending files
with ``loop.sendfile`` is what reaches nginx speed; frameworks reach 0.3-0.6x.

The core knows nothing about the data server.  An *application* object supplies two methods:

``begin(request) -> BodySink``
    called in the event loop as soon as the request line and headers are parsed; the returned
    sink receives the body as it arrives (so a PUT streams to a temp file, never into memory).
``async handle(request, sink) -> Response``
    called once the whole body is in, strictly in request order per connection, so pipelined
    requests get their responses in order (PYME's spooler pipelines PUTs on one socket).

Every response carries ``Content-Length``; header and small bodies leave in one write with
TCP_NODELAY set, so keep-alive clients never hit the Nagle/delayed-ACK stall.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import mimetypes
import os
import socket
import time
import zlib
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import BinaryIO, Protocol
from urllib.parse import unquote_to_bytes

import httptools

from pyme_desk.web.errors import HTTPError

log = logging.getLogger(__name__)

READ_BUFFER = 1 << 20
MAX_URL = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
#: pipelined requests parsed ahead of the response being written before reading pauses
MAX_PIPELINE = 16
SERVER_NAME = b"pyme-desk"


class BodySink(Protocol):
    """Receives a request body as it arrives, in the event loop thread."""

    def write(self, chunk: bytes) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...


class DiscardSink:
    """Counts and drops a body: for requests that are answered without it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class MemorySink:
    """Collects a body in memory (gunzipped if asked), refusing more than ``limit`` bytes.

    Problems are recorded, not raised, so the rest of the body is still drained and the
    connection stays usable; the handler reports them (413 / 400).
    """

    def __init__(self, limit: int, gzipped: bool = False) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.bad_gzip = False
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None

    def write(self, chunk: bytes) -> None:
        if self.too_large or self.bad_gzip:
            return
        if self._gunzip is not None:
            try:  # bounded output: a small gzip bomb cannot blow up memory
                chunk = self._gunzip.decompress(chunk, self.limit - self.size + 1)
            except zlib.error:
                self.bad_gzip = True
                self.parts = []
                return
        self.size += len(chunk)
        if self.size > self.limit:
            self.too_large = True
            self.parts = []
        else:
            self.parts.append(chunk)

    def finish(self) -> None:
        if self._gunzip is not None and not (self.too_large or self.bad_gzip):
            if not self._gunzip.eof:
                self.bad_gzip = True
                self.parts = []

    def abort(self) -> None:
        self.parts = []

    def body(self) -> bytes:
        return b"".join(self.parts)


@dataclass
class Request:
    method: str = ""
    raw_url: bytes = b""
    path: str = ""  # percent-decoded, '/'-separated; decoding errors are left to the app
    raw_path: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    keep_alive: bool = True
    peer: str = ""
    error: tuple[int, str] | None = None  # set by the core when the request is malformed

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    file: BinaryIO | None = None  # send this open file (``file_size`` bytes from ``file_offset``), then close it
    file_size: int = 0
    file_offset: int = 0
    head_only: bool = False  # HEAD: headers as for GET, no body

    @classmethod
    def json(cls, obj, status: int = 200) -> "Response":
        return cls(status, json.dumps(obj).encode(), "application/json")

    @classmethod
    def error(cls, status: int, reason: str) -> "Response":
        return cls(status, json.dumps({"error": reason}).encode(), "application/json")


_date_cache: tuple[int, str] = (0, "")


def http_date(timestamp: float | None = None) -> str:
    """An RFC 7231 date; the current one is formatted at most once a second."""
    global _date_cache
    if timestamp is not None:
        return formatdate(timestamp, usegmt=True)
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


@functools.lru_cache(maxsize=256)
def _type_for_suffix(suffix: str) -> str:
    return mimetypes.guess_type("x" + suffix)[0] or "application/octet-stream"


def content_type(name: str) -> str:
    """The Content-Type for a file name, by its extension."""
    return _type_for_suffix(os.path.splitext(name)[1].lower())


def _decode_path(raw_path: bytes) -> tuple[str, str | None]:
    """Percent-decode a URL path; returns (path, error)."""
    try:
        return unquote_to_bytes(raw_path).decode("utf-8"), None
    except UnicodeDecodeError:
        return "", "the path is not valid UTF-8"


def _parse_query(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        k, _, v = part.partition(b"=")
        try:
            key = unquote_to_bytes(k.replace(b"+", b" ")).decode("utf-8")
            val = unquote_to_bytes(v.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.setdefault(key, val)  # first value wins, as PYME's frameworks do
    return out


class HTTPConnection(asyncio.BufferedProtocol):
    """One client connection: parse, stream bodies to sinks, answer in order."""

    def __init__(self, app, server: "HTTPServer") -> None:
        self.app = app
        self.server = server
        self.loop = server.loop
        self.buffer = bytearray(READ_BUFFER)
        self.view = memoryview(self.buffer)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[Request, BodySink]] = collections.deque()
        self.request: Request | None = None
        self.sink: BodySink | None = None
        self.header_bytes = 0
        self.url_parts: list[bytes] = []
        self.worker: asyncio.Task | None = None
        self.closing = False
        self.reading_paused = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.busy = False  # a response is being produced

    # -- asyncio protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.sink is not None:  # a body was cut off: throw away what arrived
            self.sink.abort()
            self.sink = None
        while self.pending:
            _, sink = self.pending.popleft()
            sink.abort()
        self.can_write.set()

    def get_buffer(self, sizehint: int):
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.parser.feed_data(self.view[:nbytes])
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserCallbackError as e:
            if self.request is not None and self.request.error is None:
                self._fail(500, f"internal error while reading the request: {e}")
            else:
                self._fail(*(self.request.error if self.request else (400, "bad request")))
        except httptools.HttpParserError as e:
            reason = str(e) or "malformed HTTP request"
            self._fail(400, f"malformed HTTP request: {reason}")

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.request = Request(peer=self.peer)
        self.header_bytes = 0
        self.url_parts = []

    def on_url(self, url: bytes) -> None:
        self.url_parts.append(url)
        self.header_bytes += len(url)
        if self.header_bytes > MAX_URL:
            self.request.error = (414, f"the URL is longer than {MAX_URL} bytes")
            raise ValueError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.request
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES or len(req.headers) >= MAX_HEADERS:
            req.error = (431, f"request headers are larger than {MAX_HEADER_BYTES} bytes")
            raise ValueError("headers too large")
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        # httptools hands over whole headers; a repeated header joins with a comma (RFC 9110)
        req.headers[key] = f"{req.headers[key]}, {val}" if key in req.headers else val

    def on_headers_complete(self) -> None:
        req = self.request
        req.method = self.parser.get_method().decode("ascii", "replace")
        req.keep_alive = self.parser.should_keep_alive()
        req.raw_url = b"".join(self.url_parts)
        try:
            parsed = httptools.parse_url(req.raw_url)
        except httptools.HttpParserInvalidURLError:
            req.error = (400, "malformed URL")
            parsed = None
        if parsed is not None:
            req.raw_path = parsed.path or b"/"
            path, err = _decode_path(req.raw_path)
            req.path = path
            if err:
                req.error = (400, err)
            req.query = _parse_query(parsed.query or b"")
        if req.error is None and "\x00" in req.path:
            req.error = (400, "the path contains a NUL character")
        if req.error is not None:
            self.sink = DiscardSink()
        else:
            try:
                self.sink = self.app.begin(req)
            except Exception as e:  # app bug: answer 500 later, keep the connection usable
                log.exception("begin() failed for %s %s", req.method, req.path)
                req.error = (500, f"internal error: {e}")
                self.sink = DiscardSink()
        if (req.headers.get("expect", "").lower() == "100-continue" and not self.pending
                and not self.busy and self.transport is not None):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.sink.write(body)

    def on_message_complete(self) -> None:
        req, sink = self.request, self.sink
        self.request, self.sink = None, None
        sink.finish()
        self.pending.append((req, sink))
        if len(self.pending) >= MAX_PIPELINE and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._answer_pending())

    # -- responses --------------------------------------------------------------------------
    def _fail(self, status: int, reason: str) -> None:
        """The byte stream is unusable: answer once (after what is queued) and close."""
        if self.sink is not None:
            self.sink.abort()
            self.sink = None
        req = self.request or Request(peer=self.peer)
        self.request = None
        req.error = (status, reason)
        req.keep_alive = False
        self.pending.append((req, DiscardSink()))
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._answer_pending())

    async def _answer_pending(self) -> None:
        while self.pending and not self.closing:
            req, sink = self.pending.popleft()
            self.busy = True
            try:
                if req.error is not None:
                    resp = Response.error(*req.error)
                else:
                    resp = await self._handle(req, sink)
                await self._send(req, resp)
            finally:
                self.busy = False
            if not req.keep_alive:
                self._close()
                return
            if self.reading_paused and len(self.pending) < MAX_PIPELINE // 2 and not self.closing:
                self.reading_paused = False
                self.transport.resume_reading()
        if self.server.stopping and not self.pending:
            self._close()

    async def _handle(self, req: Request, sink: BodySink) -> Response:
        started = time.perf_counter()
        try:
            resp = await self.app.handle(req, sink)
        except Exception as e:  # never a traceback page: log it, answer JSON
            if isinstance(e, HTTPError):
                resp = Response.error(e.status, e.reason)
            else:
                log.exception("error handling %s %s", req.method, req.path)
                resp = Response.error(500, f"internal server error: {type(e).__name__}: {e}")
            sink.abort()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s -> %d (%.1f ms)", self.peer, req.method, req.path, resp.status,
                      1e3 * (time.perf_counter() - started))
        return resp

    async def _send(self, req: Request, resp: Response) -> None:
        if self.closing or self.transport is None:
            return
        keep = req.keep_alive and not self.server.stopping
        req.keep_alive = keep
        length = resp.file_size if resp.file is not None else len(resp.body)
        try:
            phrase = HTTPStatus(resp.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {resp.status} {phrase}", f"Content-Length: {length}",
                 f"Date: {http_date()}", "Server: pyme-desk"]
        if resp.content_type:
            lines.append(f"Content-Type: {resp.content_type}")
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if resp.head_only or req.method == "HEAD":
            self.transport.write(head)
            if resp.file is not None:
                resp.file.close()
        elif resp.file is None:
            self.transport.write(head + resp.body if len(resp.body) < 65536 else head)
            if len(resp.body) >= 65536:
                self.transport.write(resp.body)
        else:
            self.transport.write(head)
            await self._send_file(resp.file, resp.file_offset, resp.file_size)
        await self.can_write.wait()

    async def _send_file(self, f: BinaryIO, offset: int, size: int) -> None:
        try:
            await self.loop.sendfile(self.transport, f, offset, size)
        except (ConnectionError, OSError) as e:
            log.info("sending %s to %s stopped: %s", getattr(f, "name", "a file"), self.peer, e)
            self._close()
        finally:
            f.close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class HTTPServer:
    """Listens on (bind, port) and serves ``app``, in the calling event loop."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.connections: set[HTTPConnection] = set()
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None

    async def listen(self, bind: str, port: int) -> tuple[str, int]:
        self._server = await self.loop.create_server(
            lambda: HTTPConnection(self.app, self), host=bind, port=port,
            reuse_address=os.name != "nt", backlog=256)
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` s), close the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + grace
        while self.loop.time() < deadline:
            active = [c for c in self.connections if c.busy or c.pending or c.sink is not None]
            if not active:
                break
            await asyncio.sleep(0.02)
        for c in list(self.connections):
            c._close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
