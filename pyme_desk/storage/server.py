"""The data server: one data root served over PYME's data-server protocol (protocol.md §2).

``DataServer`` is a plain object: ``start()`` returns once it listens (on its own thread and
event loop), ``url`` says where, ``stop()`` finishes the requests in flight and unregisters.
The CLI (``pyme-desk dataserver``), the supervisor and the tests all use it the same way.

Requests are answered by :class:`DataServerApp` (routing and semantics) on top of the small
HTTP core in :mod:`pyme_desk.web.http`.  Blocking work that may take long (HDF5 appends,
globbing a big tree, fetching a mirror source) runs on a thread pool, never in the loop.
"""
from __future__ import annotations

import asyncio
import glob as globmod
import hmac
import json
import logging
import os
import shutil
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import requests

from pyme_desk.discovery.addresses import advertise_address, is_loopback
from pyme_desk.errors import UsageError
from pyme_desk.monitor.status import StatusSampler
from pyme_desk.names import computer_name, dataserver_process_name, service_name
from pyme_desk.storage.h5r import H5RStore
from pyme_desk.storage.h5series import H5SeriesStore
from pyme_desk.storage.listing import ListingCache, frames_from
from pyme_desk.storage.paths import Root, split_components
from pyme_desk.storage.safe_pickle import decode_records
from pyme_desk.storage.upload import UploadSink
from pyme_desk.web.errors import HTTPError
from pyme_desk.web.http import DiscardSink, MemorySink, Request, Response, content_type, http_date
from pyme_desk.web.service import BackgroundServer, ServerObject

log = logging.getLogger(__name__)

HTTP_PROTOCOL = "_pyme-http"
#: aggregate bodies are held in memory; more than this is refused with 413
MAX_AGGREGATE_BODY = 512 * 1024 * 1024
MIRROR_TIMEOUT = (5.0, 60.0)  # connect, read (s): PYME's 0.1 s makes mirroring fail
AGGREGATE_PREFIXES = ("__aggregate_h5r/", "__aggregate_h5/", "__aggregate_txt/")
#: files up to this size are read and sent in one write; bigger ones go out with sendfile
SMALL_FILE = 256 * 1024


class _Deferred:
    """A sink whose request is refused: the body is drained and the error raised at handle time."""

    def __init__(self, error: HTTPError) -> None:
        self.error = error

    def write(self, chunk: bytes) -> None:
        pass

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


class DataServerApp:
    """Routing and semantics of the data server; see protocol.md §2."""

    def __init__(self, server: "DataServer") -> None:
        self.server = server
        self.root: Root = server.root
        self.listings: ListingCache = server.listings
        self.h5r: H5RStore = server.h5r
        self.h5: H5SeriesStore = server.h5
        self._txt_locks: dict[str, threading.Lock] = {}
        self._txt_guard = threading.Lock()

    # -- body phase (event loop, as soon as the headers are in) ------------------------------
    def begin(self, req: Request):
        if req.method != "PUT":
            return DiscardSink()
        try:
            self._authorize(req)
            rel = req.path.lstrip("/")
            gz = req.header("content-encoding", "").strip().lower() == "gzip"
            if rel.startswith(AGGREGATE_PREFIXES) or rel.startswith("__aggregate"):
                return MemorySink(MAX_AGGREGATE_BODY, gzipped=gz)
            if "MirrorSource" in req.query:
                return DiscardSink()
            target = self.root.resolve(req.path)
            if target.trailing_slash:
                return DiscardSink()
            if target.fs.is_dir():
                raise HTTPError(405, f"{target.rel} is a directory")
            if os.path.lexists(target.fs):
                raise HTTPError(405, f"File already exists: {target.rel} (cluster files are write-once)")
            return UploadSink(self.root.temp_dir, gzipped=gz)
        except HTTPError as e:
            return _Deferred(e)

    def _authorize(self, req: Request) -> None:
        token = self.server.required_token
        if token is None:
            return
        given = req.header("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPError(401, "this data server needs the cluster token (Authorization: Bearer <token>)")

    # -- answer phase (in request order) -----------------------------------------------------
    async def handle(self, req: Request, sink) -> Response:
        if isinstance(sink, _Deferred):
            raise sink.error
        if req.method in ("GET", "HEAD"):
            resp = await self._get(req)
            if req.method == "HEAD":
                resp.head_only = True
            return resp
        if req.method == "PUT":
            return await self._put(req, sink)
        return Response(405, b'{"error": "method not allowed; use GET, HEAD or PUT"}',
                        "application/json", headers=[("Allow", "GET, HEAD, PUT")])

    async def _get(self, req: Request) -> Response:
        rel = req.path.lstrip("/")
        if rel == "__status":
            return Response(200, self.server.sampler.document_bytes(), "application/json")
        if rel.startswith("__glob"):
            return Response.json(await self._offload(self._glob, req.query.get("pattern", "")))
        if rel.startswith("__aggregate") or rel.startswith("__pyramid"):
            raise HTTPError(405, "aggregate endpoints take PUT")
        target = self.root.resolve(req.path)
        fs = target.fs
        try:
            fd = os.open(fs, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except (FileNotFoundError, NotADirectoryError):
            return await self._get_container_part(req, target)
        except (IsADirectoryError, PermissionError):
            if fs.is_dir():  # Windows cannot open a directory as a file
                return await self._get_directory(target, req)
            raise HTTPError(403, f"no permission to read {target.rel}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                fd = -1
                return await self._get_directory(target, req)
            if target.trailing_slash:  # "<series>.h5/": a packed series listed as a folder
                os.close(fd)
                fd = -1
                return await self._get_container_part(req, target)
            headers = [("Last-Modified", http_date(st.st_mtime)), ("Accept-Ranges", "bytes")]
            ctype = content_type(fs.name)
            status, start, length = 200, 0, st.st_size
            wanted = byte_range(req.header("range"), st.st_size)
            if wanted is not None:
                status, (start, length) = 206, wanted
                headers.append(("Content-Range", f"bytes {start}-{start + length - 1}/{st.st_size}"))
            if length <= SMALL_FILE:  # one read, one write: no sendfile round trips
                with os.fdopen(fd, "rb", buffering=0) as f:
                    fd = -1
                    f.seek(start)
                    body = f.read(length)
                return Response(status, body, ctype, headers=headers)
            f = os.fdopen(fd, "rb", buffering=0)
            fd = -1
            return Response(status, content_type=ctype, file=f, file_offset=start, file_size=length,
                            headers=headers)
        finally:
            if fd >= 0:
                os.close(fd)

    async def _get_directory(self, target, req: Request) -> Response:
        if not target.trailing_slash:
            return Response(301, headers=[("Location", "/" + quote(target.rel) + "/")])
        first_frame = _first_frame(req)
        try:
            if first_frame is not None:
                body = await self._offload(self.listings.listing, target.fs, first_frame)
            else:
                body = self.listings.cached(target.fs)
                if body is None:  # a cold scan of a big directory must not stall other clients
                    body = await self._offload(self.listings.scan, target.fs)
        except PermissionError:
            raise HTTPError(403, f"no permission to list {target.rel or '/'}") from None
        except OSError as e:
            raise HTTPError(404, f"cannot list {target.rel or '/'}: {e.strerror}") from None
        return Response(200, body, "application/json")

    async def _get_container_part(self, req: Request, target) -> Response:
        """``<series>.h5/<part>`` and ``<results>.h5r/<table>`` read-back (§2.3, §6.3)."""
        series_part = _split_container(target.rel, (".h5",), allow_bare=target.trailing_slash)
        if series_part is not None:
            container, part = series_part
            path = self.root.path / container
            if part == "":
                entries = await self._offload(self.h5.listing, path)
                first_frame = _first_frame(req)
                return Response.json(entries if first_frame is None else frames_from(entries, first_frame))
            ctype, body = await self._offload(self.h5.read, path, part)
            return Response(200, body, ctype)
        table_part = _split_container(target.rel, (".h5r", ".hdf"))
        if table_part is not None:
            container, part = table_part
            ctype, body = await self._offload(self.h5r.read_part, self.root.path / container, part,
                                              dict(req.query))
            return Response(200, body, ctype)
        raise HTTPError(404, f"not found: {target.rel}")

    async def _put(self, req: Request, sink) -> Response:
        rel = req.path.lstrip("/")
        if rel.startswith("__aggregate_h5r/"):
            await self._offload(self._aggregate_h5r, rel[len("__aggregate_h5r/"):], _body(sink))
        elif rel.startswith("__aggregate_h5/"):
            await self._offload(self._aggregate_h5, rel[len("__aggregate_h5/"):], _body(sink))
        elif rel.startswith("__aggregate_txt/"):
            await self._offload(self._aggregate_txt, rel[len("__aggregate_txt/"):], _body(sink))
        elif rel.startswith("__aggregate") or rel.startswith("__pyramid"):
            raise HTTPError(404, f"unknown aggregate endpoint {rel.split('/')[0]!r}")
        elif "MirrorSource" in req.query:
            await self._offload(self._mirror, req.path, req.query["MirrorSource"])
        else:
            target = self.root.resolve(req.path)
            if target.trailing_slash:
                self._makedirs(target.fs)
            else:
                self._store(sink, target)
        return Response(200)

    # -- writing -----------------------------------------------------------------------------
    def _makedirs(self, directory: Path) -> None:
        """mkdir -p inside the root, telling the listing cache about each new directory."""
        missing = []
        probe = directory
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        if not probe.is_dir():
            raise HTTPError(409, f"{self.root.relative(probe)} is a file, not a directory")
        self.root.check_inside(directory)
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise HTTPError(409, f"{self.root.relative(d)} is a file, not a directory") from None
                continue
            except OSError as e:
                raise HTTPError(409, f"cannot create {self.root.relative(d)}: {e.strerror}") from None
            self.listings.file_added(d, is_dir=True)

    def _store(self, sink: UploadSink, target) -> None:
        self._makedirs(target.fs.parent)
        if not sink.commit(target.fs):
            raise HTTPError(405, f"File already exists: {target.rel} (cluster files are write-once)")
        self.listings.file_added(target.fs)

    def _aggregate_target(self, rel: str, suffixes: tuple[str, ...]) -> tuple[Path, str]:
        split = _split_container(rel, suffixes, allow_bare=True)
        if split is None:
            raise HTTPError(400, f"aggregate path must name a {' or '.join(suffixes)} file: {rel}")
        container, part = split
        path = self.root.resolve(container).fs
        self._makedirs(path.parent)
        return path, part

    def _aggregate_h5r(self, rel: str, body: bytes) -> None:
        path, table = self._aggregate_target(rel, (".h5r", ".hdf"))
        new = not path.exists()
        if table == "":
            raise HTTPError(400, "legacy pickled fit-result objects are not accepted; "
                                 "PUT record arrays to <file>.h5r/<Table>")
        if table == "MetaData":
            self.h5r.append_metadata(path, _json_object(body, "MetaData"))
        elif table == "Events":
            self.h5r.append_events(path, _events(body))
        else:
            self.h5r.append_records(path, table, decode_records(body))
        self._note_aggregate(path, new)

    def _aggregate_h5(self, rel: str, body: bytes) -> None:
        path, part = self._aggregate_target(rel, (".h5",))
        if part == "":
            raise HTTPError(400, "aggregate path must name a part: <series>.h5/<part>")
        new = not path.exists()
        self.h5.append(path, part, body)
        self._note_aggregate(path, new)

    def _aggregate_txt(self, rel: str, body: bytes) -> None:
        target = self.root.resolve(rel)
        if target.trailing_slash or not target.rel:
            raise HTTPError(400, "aggregate_txt needs a file name")
        if target.fs.is_dir():
            raise HTTPError(409, f"{target.rel} is a directory")
        self._makedirs(target.fs.parent)
        with self._txt_guard:
            lock = self._txt_locks.setdefault(target.rel, threading.Lock())
        with lock:
            new = not target.fs.exists()
            with open(target.fs, "ab") as f:
                f.write(body)
        self._note_aggregate(target.fs, new)

    def _note_aggregate(self, path: Path, new: bool) -> None:
        if new:
            self.listings.file_added(path)
        else:
            self.listings.file_changed(path)

    def _mirror(self, url_path: str, source: str) -> None:
        target = self.root.resolve(url_path)
        if target.trailing_slash or not target.rel:
            raise HTTPError(400, "MirrorSource needs a file path")
        if not source.startswith(("http://", "https://")):
            raise HTTPError(400, "MirrorSource must be an http:// URL")
        if os.path.lexists(target.fs):
            raise HTTPError(405, f"File already exists: {target.rel}")
        sink = UploadSink(self.root.temp_dir)
        try:
            with requests.get(source, stream=True, timeout=MIRROR_TIMEOUT) as r:
                if r.status_code != 200:
                    raise HTTPError(502, f"MirrorSource answered {r.status_code}")
                for chunk in r.iter_content(1 << 20):
                    sink.write(chunk)
        except requests.RequestException as e:
            sink.abort()
            raise HTTPError(502, f"cannot fetch MirrorSource: {e}") from None
        except BaseException:
            sink.abort()
            raise
        sink.finish()
        self._store(sink, target)

    # -- reading -----------------------------------------------------------------------------
    def _glob(self, pattern: str) -> list[str]:
        """``glob`` confined to the root: relative patterns only, no '..', no links out."""
        if not pattern:
            raise HTTPError(400, "__glob needs ?pattern=")
        if pattern.startswith(("/", "~")) or os.path.isabs(pattern):
            raise HTTPError(400, "__glob patterns must be relative to the data root")
        split_components(pattern)  # refuses '..', drive letters, backslashes, control chars
        out = []
        real_root = self.root.real.rstrip(os.sep) + os.sep
        for match in globmod.glob(pattern, root_dir=self.root.path):
            real = os.path.realpath(self.root.path / match)
            if real.startswith(real_root) and not any(
                    c.startswith(".pyme-desk") for c in Path(match).parts):
                out.append(Path(match).as_posix())
        return sorted(out)

    async def _offload(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.server.executor, fn, *args)


def _body(sink) -> bytes:
    if not isinstance(sink, MemorySink):
        return b""
    if sink.too_large:
        raise HTTPError(413, f"aggregate bodies are limited to {MAX_AGGREGATE_BODY} bytes")
    if sink.bad_gzip:
        raise HTTPError(400, "the body is not valid gzip (Content-Encoding: gzip)")
    return sink.body()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single ``Range: bytes=a-b`` request; None means the whole file.

    Ranges we do not serve (several ranges, other units) fall back to the whole file, which
    RFC 9110 allows; a range wholly past the end is a 416.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix: the last N bytes
            n = int(last)
            if n <= 0:
                raise ValueError
            start = max(size - n, 0)
            end = size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or start < 0:
        raise HTTPError(416, f"range starts past the end of the file ({size} bytes)")
    if end < start:
        return None
    return start, end - start + 1


def _first_frame(req: Request) -> int | None:
    """The ``first_frame`` listing query (our extension, see storage/listing.py), if given."""
    value = req.query.get("first_frame")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise HTTPError(400, f"first_frame must be a frame number (0, 1, ...), not {value!r}")
    return int(value)


def _split_container(rel: str, suffixes: tuple[str, ...], allow_bare: bool = False):
    """Split ``a/b.h5r/Table`` into (``a/b.h5r``, ``Table``); None if no container in the path."""
    parts = rel.split("/")
    for i, comp in enumerate(parts):
        if comp.endswith(suffixes) and (i < len(parts) - 1 or allow_bare):
            return "/".join(parts[: i + 1]), "/".join(parts[i + 1:])
    return None


def _json_object(body: bytes, what: str) -> dict:
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, f"{what} must be a JSON object") from None
    if not isinstance(obj, dict):
        raise HTTPError(400, f"{what} must be a JSON object")
    return obj


def _events(body: bytes):
    """Events arrive as JSON ``[[name, descr, time], ...]`` or as a record array."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return decode_records(body)
    if not isinstance(obj, list):
        raise HTTPError(400, "Events must be a JSON list of [name, description, time]")
    return obj


class DataServer(ServerObject):
    """A data server for one root; see the module docstring."""

    def __init__(self, root: Path, *, port: int = 0, bind: str = "127.0.0.1",
                 server_filter: str | None = None, token: str | None = None,
                 advertise: str = "none", advertise_address: str | None = None,
                 allow_open_writes: bool = False, status_interval: float = 1.0,
                 h5r_flush_interval: float = 1.0) -> None:
        self.root = Root(root)
        self.port = port
        self.bind = bind
        self.server_filter = computer_name() if server_filter is None else server_filter
        self.loopback_only = is_loopback(bind)
        if not self.loopback_only and not token and not allow_open_writes:
            raise UsageError(f"binding to {bind or 'all interfaces'} exposes writes to the network: "
                             "configure a cluster token (desk-cluster-token / --token-file), or "
                             "pass --insecure-open-writes for an isolated cluster network with PYME clients")
        #: the token every PUT must carry, or None when writes are open (the CLI passes the
        #: cluster token only when the server is reachable from the network)
        self.required_token = token or None
        if advertise not in ("zeroconf", "local", "none"):
            raise UsageError(f"unknown --advertise mode {advertise!r}: use zeroconf, local or none")
        if advertise == "zeroconf" and self.loopback_only:
            raise UsageError("zeroconf advertisement needs a network bind address "
                             "(--bind 0.0.0.0 or an interface IP); use --advertise local for 127.0.0.1")
        self.advertise = advertise
        self.advertise_address = advertise_address
        self.status_interval = status_interval
        self.h5r = H5RStore(flush_interval=h5r_flush_interval)
        self.h5 = H5SeriesStore()
        self.listings = ListingCache(is_aggregating=self._is_aggregating)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dataserver-io")
        self.url = ""
        self.address = "127.0.0.1"
        self.sampler: StatusSampler | None = None
        self._advertiser = None
        self._service = BackgroundServer(lambda: DataServerApp(self), bind, port, name="data server",
                                         on_started=self._on_started, on_stopped=self._on_stopped)

    def _is_aggregating(self, path: str) -> bool:
        return self.h5r.is_open(Path(path)) or self.h5.is_open(Path(path))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "DataServer":
        try:
            self.root.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the data root {self.root.path}: {e.strerror or e}") from None
        if not os.access(self.root.path, os.W_OK):
            raise UsageError(f"the data root {self.root.path} is not writable by this user")
        shutil.rmtree(self.root.temp_dir, ignore_errors=True)  # leftovers of a crash
        self.root.temp_dir.mkdir(exist_ok=True)
        self.port = self._service.start(timeout)
        return self

    def _on_started(self, port: int) -> None:
        if self.loopback_only:
            self.address = "127.0.0.1" if self.bind in ("", "0.0.0.0", "::", "localhost") else self.bind
        else:
            self.address, warning = advertise_address(self.advertise_address)
            if warning:
                log.warning(warning)
        self.url = f"http://{self.address}:{port}/"
        self.sampler = StatusSampler(self.root.path, self.status_interval, identity={
            "IPAddress": self.address, "BindAddress": [self.bind, port], "Port": port,
            "Protocol": "1.1", "TestMode": False, "ComputerName": computer_name()},
            extra=self._status_extra)
        self.sampler.start()
        from pyme_desk.discovery.advertiser import start_advertiser

        self._advertiser = start_advertiser(HTTP_PROTOCOL, service_name(dataserver_process_name(self.server_filter)),
                                            port, self.advertise, self.address)
        log.info("serving %s at %s (filter %r)", self.root.path, self.url, self.server_filter)

    def _on_stopped(self) -> None:
        if self._advertiser is not None:
            self._advertiser.stop()
        if self.sampler is not None:
            self.sampler.stop()
        self.h5r.close()
        self.h5.close()
        self.executor.shutdown(wait=True)

    def _status_extra(self) -> dict:
        open_files = self.h5r.open_files() + self.h5.open_files()
        return {"Filter": self.server_filter, "Root": str(self.root.path),
                "TokenRequired": self.required_token is not None,
                # results and series files still being appended to: not complete, do not copy
                "OpenForAppend": sorted(self.root.relative(p) for p in open_files)}
