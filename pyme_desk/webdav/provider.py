"""The cluster's merged namespace as a wsgidav provider: folders, files, streaming reads and writes.

What a WebDAV client sees:

* the merged listing of every data server of the cluster (the cluster client's view):
  series directories are folders, ``.h5``/``.h5r`` files are files;
* ``GET`` streams from a data server that holds the file; ``PUT`` of a new file streams to
  the server the cluster client would choose (least recently used with room for it) and is
  stored atomically there; ``MKCOL`` creates a directory on one server;
* cluster files are write-once: overwriting, deleting, moving or renaming one is refused
  with 403 and a sentence saying so, never dropped silently;
* Windows' and macOS' file managers create a new file empty first (``PUT`` of 0 bytes, or
  ``LOCK`` of an unmapped name) and send its content right after.  Such an empty file is
  held here as a *placeholder* (listed, not yet stored); content sent within
  ``placeholder_s`` seconds becomes the stored file, otherwise the empty file is stored then.
* names we wrote show in listings at once, before the cluster listings catch up.
"""
from __future__ import annotations

import hashlib
import logging
import mimetypes
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from wsgidav.dav_error import (HTTP_BAD_GATEWAY, HTTP_FORBIDDEN, HTTP_INSUFFICIENT_STORAGE,
                               HTTP_SERVICE_UNAVAILABLE, DAVError)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.choice import ServerChooser
from pyme_desk.cluster.errors import (ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                                      InsufficientSpaceError, InvalidNameError, ServerUnreachableError)
from pyme_desk.cluster.uris import split_path, validate_name
from pyme_desk.webdav.transfer import BLOCK, Download, Upload

log = logging.getLogger(__name__)

WRITE_ONCE = ("cluster files are write-once: {path} already exists and cannot be {verb}; "
              "store the new version under a new name")
NO_COPY_MOVE = ("cluster files are write-once: {path} cannot be moved or renamed, and copies "
                "inside the share are not made; download it and upload it under the new name")
#: an upload of unknown length (chunked) is kept in memory up to this size, then on disk
SPOOL_MEMORY = 8 << 20
READ_ONLY = "this WebDAV share is read-only (started with --read-only)"
#: servers tried for one upload whose connection fails before any data was sent
PUT_ATTEMPTS = 3


@dataclass
class _Recent:
    """A name this share created: a stored file/dir not yet in the listings, or a placeholder."""

    kind: str  # "file", "dir" or "placeholder"
    size: int
    until: float  # monotonic time at which it is dropped (or, for a placeholder, stored empty)
    uploading: bool = False


def _dav_error(error: ClusterError, path: str) -> DAVError:
    """The WebDAV answer for a cluster failure, with the reason as the body's explanation."""
    if isinstance(error, ClusterFileExistsError):
        return DAVError(HTTP_FORBIDDEN, WRITE_ONCE.format(path=path, verb="overwritten"))
    if isinstance(error, InvalidNameError):
        return DAVError(HTTP_FORBIDDEN, str(error))
    if isinstance(error, InsufficientSpaceError):
        return DAVError(HTTP_INSUFFICIENT_STORAGE, str(error))
    if isinstance(error, ServerUnreachableError):
        return DAVError(HTTP_SERVICE_UNAVAILABLE, str(error))
    return DAVError(HTTP_BAD_GATEWAY, str(error))


class ClusterProvider(DAVProvider):
    """wsgidav provider over a :class:`ClusterClient`'s cluster; see the module docstring."""

    def __init__(self, client: ClusterClient, *, read_only: bool = False, placeholder_s: float = 30.0,
                 timeout: float = 60.0):
        super().__init__()
        self.client = client
        self.read_only = read_only
        self.placeholder_s = placeholder_s
        self.timeout = timeout
        self.settle_s = 2 * client.listing_cache_s + 1.0
        self._chooser = ServerChooser()
        self._lock = threading.Lock()
        self._recent: dict[str, _Recent] = {}

    def is_readonly(self) -> bool:
        return self.read_only

    def get_resource_inst(self, path: str, environ: dict):
        self.store_due_placeholders()
        cluster_path = path.strip("/")
        if not cluster_path:
            return ClusterFolder("/", environ, self)
        parent, name = split_path(cluster_path)
        found = self.members(parent).get(name)
        if found is None:
            return None
        return self._resource(cluster_path, found, environ)

    def _resource(self, cluster_path: str, found: tuple[str, int], environ: dict):
        kind, size = found
        if kind == "dir":
            return ClusterFolder("/" + cluster_path, environ, self)
        return ClusterFile("/" + cluster_path, environ, self, size, placeholder=kind == "placeholder")

    # -- the namespace ---------------------------------------------------------------------------

    def members(self, directory: str) -> dict[str, tuple[str, int]]:
        """``{name: (kind, size)}`` in a cluster directory; kind is file, dir or placeholder."""
        try:
            entries = self.client.list_entries(directory)
        except ClusterError as e:
            raise _dav_error(e, directory or "/") from None
        out: dict[str, tuple[str, int]] = {}
        for name, entry in entries.items():
            if name.endswith("/"):
                out[name[:-1]] = ("dir", entry.size)
            elif name not in out:
                out[name] = ("file", entry.size)
        now = time.monotonic()
        with self._lock:
            for path, recent in list(self._recent.items()):
                if recent.kind != "placeholder" and recent.until < now:
                    del self._recent[path]
                    continue
                parent, name = split_path(path)
                if parent == directory and name not in out:
                    out[name] = (recent.kind, recent.size)
        return out

    def free_bytes(self) -> int | None:
        """Free disk summed over the responsive data servers (None if none says)."""
        try:
            statuses = self.client.get_status()
        except ClusterError:
            return None
        free = [s["Disk"]["free"] for s in statuses
                if s.get("Responsive") and isinstance(s.get("Disk"), dict) and "free" in s["Disk"]]
        return sum(free) if free else None

    # -- writing ---------------------------------------------------------------------------------

    def check_writable(self, path: str) -> str:
        """The cluster path for a new name, or DAVError(403) saying why it cannot be written."""
        if self.read_only:
            raise DAVError(HTTP_FORBIDDEN, READ_ONLY)
        try:
            return validate_name(path.strip("/"))
        except InvalidNameError as e:
            raise DAVError(HTTP_FORBIDDEN, str(e)) from None

    def add_placeholder(self, cluster_path: str) -> None:
        with self._lock:
            self._recent[cluster_path] = _Recent("placeholder", 0, time.monotonic() + self.placeholder_s)

    def drop_placeholder(self, cluster_path: str) -> bool:
        with self._lock:
            recent = self._recent.get(cluster_path)
            if recent is None or recent.kind != "placeholder":
                return False
            del self._recent[cluster_path]
            return True

    def _set_uploading(self, cluster_path: str, uploading: bool) -> None:
        with self._lock:
            recent = self._recent.get(cluster_path)
            if recent is not None and recent.kind == "placeholder":
                recent.uploading = uploading
                recent.until = time.monotonic() + self.placeholder_s

    def _stored(self, cluster_path: str, kind: str, size: int) -> None:
        with self._lock:
            self._recent[cluster_path] = _Recent(kind, size, time.monotonic() + self.settle_s)

    def store_due_placeholders(self, *, all_now: bool = False) -> None:
        """Store as empty files the placeholders whose content never came (all with ``all_now``)."""
        now = time.monotonic()
        with self._lock:
            due = [p for p, r in self._recent.items()
                   if r.kind == "placeholder" and not r.uploading and (all_now or r.until <= now)]
            for p in due:
                self._recent[p].uploading = True
        for path in due:
            try:
                upload = self.open_upload(path, 0)
                upload.finish()
            except ClusterError as e:
                log.warning("could not store the empty file %s: %s", path, e)
                self.drop_placeholder(path)
                continue
            self._stored(path, "file", 0)

    def open_upload(self, cluster_path: str, length: int) -> Upload:
        """A PUT of ``length`` bytes to the server the cluster client would choose for it."""
        tried: set[str] = set()
        last: ClusterError | None = None
        for _ in range(PUT_ATTEMPTS):
            statuses = {s["URL"]: s for s in self.client.get_status()}
            server = self._chooser.choose(self.client.servers(), statuses=statuses, need_bytes=length,
                                          exclude=tried)
            try:
                return Upload(server + quote(cluster_path, safe="/"), length,
                              token=self.client.token, timeout=self.timeout)
            except ServerUnreachableError as e:
                tried.add(server)
                last = e
        raise ServerUnreachableError(f"could not store {cluster_path!r}: {last}")

    def make_directory(self, cluster_path: str) -> None:
        upload = self.open_upload(cluster_path.rstrip("/") + "/", 0)
        upload.finish()
        self._stored(cluster_path, "dir", 0)

    def writer(self, cluster_path: str, length: int | None) -> "_Writer":
        self._set_uploading(cluster_path, True)
        return _Writer(self, cluster_path, length)

    def upload_done(self, cluster_path: str, size: int | None) -> None:
        """An upload ended: stored (``size``), or failed (None: a placeholder stays pending)."""
        if size is None:
            self._set_uploading(cluster_path, False)
        else:
            self._stored(cluster_path, "file", size)

    # -- reading ---------------------------------------------------------------------------------

    def open_download(self, cluster_path: str) -> Download:
        """A streaming GET of the file from the nearest server holding it."""
        try:
            locations = self.client.locate_file(cluster_path)
        except ClusterError as e:
            raise _dav_error(e, cluster_path) from None
        last: ClusterError = ClusterFileNotFoundError(f"{cluster_path!r} is on no reachable data server")
        for url, _latency in locations:
            try:
                return Download(url, self.timeout)
            except (ServerUnreachableError, ClusterFileNotFoundError) as e:
                last = e
        raise _dav_error(last, cluster_path)


class _Writer:
    """The file object wsgidav writes a PUT body into; streams it to a data server.

    With a known length the body goes straight through; an empty body to a new name makes a
    placeholder; a body of unknown length is spooled (``SPOOL_MEMORY`` in memory, the rest
    in a temp file) and sent once complete.
    """

    def __init__(self, provider: ClusterProvider, cluster_path: str, length: int | None):
        self.provider = provider
        self.path = cluster_path
        self.size = 0
        self._upload: Upload | None = None
        self._spool: BinaryIO | None = None
        if length is None:
            self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        elif length > 0:
            self._upload = self._open(length)

    def _open(self, length: int) -> Upload:
        try:
            return self.provider.open_upload(self.path, length)
        except ClusterError as e:
            self.provider.upload_done(self.path, None)
            raise _dav_error(e, self.path) from None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        try:
            if self._spool is not None:
                self._spool.write(data)
            elif self._upload is not None:
                self._upload.write(data)
            elif data:
                raise ClusterError(f"{self.path}: more data than the announced Content-Length")
        except ClusterError as e:
            self.abort()
            raise _dav_error(e, self.path) from None

    def close(self) -> None:
        try:
            if self._spool is not None:
                spool, self._spool = self._spool, None
                with spool:
                    if self.size:
                        spool.seek(0)
                        self._upload = self._open(self.size)
                        while block := spool.read(BLOCK):
                            self._upload.write(block)
            if self._upload is None:  # an empty body: hold the name as a placeholder
                self.provider.add_placeholder(self.path)
                return
            self._upload.finish()
        except ClusterError as e:
            self.provider.upload_done(self.path, None)
            raise _dav_error(e, self.path) from None
        self.provider.upload_done(self.path, self.size)

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._upload is not None:
            self._upload.abort()
        self.provider.upload_done(self.path, None)


class ClusterFolder(DAVCollection):
    """A cluster directory (a plain folder or a series)."""

    def __init__(self, path: str, environ: dict, provider: ClusterProvider):
        super().__init__(path, environ)
        self.provider = provider
        self.cluster_path = path.strip("/")

    def get_member_names(self) -> list[str]:
        return sorted(self.provider.members(self.cluster_path))

    def get_member(self, name: str):
        found = self.provider.members(self.cluster_path).get(name)
        return None if found is None else self.provider._resource(self._child(name), found, self.environ)

    def get_member_list(self) -> list:
        members = self.provider.members(self.cluster_path)
        return [self.provider._resource(self._child(n), members[n], self.environ) for n in sorted(members)]

    def _child(self, name: str) -> str:
        return f"{self.cluster_path}/{name}" if self.cluster_path else name

    def get_available_bytes(self) -> int | None:
        return self.provider.free_bytes()

    def create_empty_resource(self, name: str) -> "ClusterFile":
        path = self.provider.check_writable(self._child(name))
        if self.environ.get("REQUEST_METHOD") != "PUT":  # LOCK of a new name: hold it empty
            self.provider.add_placeholder(path)
        return ClusterFile("/" + path, self.environ, self.provider, 0, placeholder=True)

    def create_collection(self, name: str) -> None:
        path = self.provider.check_writable(self._child(name))
        try:
            self.provider.make_directory(path)
        except ClusterError as e:
            raise _dav_error(e, path) from None

    def delete(self) -> None:
        raise DAVError(HTTP_FORBIDDEN, WRITE_ONCE.format(path=self.cluster_path or "/", verb="deleted"))

    def support_recursive_move(self, dest_path: str) -> bool:
        return False

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise DAVError(HTTP_FORBIDDEN, NO_COPY_MOVE.format(path=self.cluster_path or "/"))

    def handle_move(self, dest_path: str) -> bool:
        raise DAVError(HTTP_FORBIDDEN, NO_COPY_MOVE.format(path=self.cluster_path or "/"))


class ClusterFile(DAVNonCollection):
    """A cluster file, or a placeholder for one this share is about to store."""

    def __init__(self, path: str, environ: dict, provider: ClusterProvider, size: int, *,
                 placeholder: bool = False):
        super().__init__(path, environ)
        self.provider = provider
        self.cluster_path = path.strip("/")
        self.size = size
        self.placeholder = placeholder
        self._writer: _Writer | None = None

    def get_content_length(self) -> int:
        return self.size

    def get_content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def get_etag(self) -> str:
        # write-once: a stored file's content never changes, so path and size identify it
        key = f"{self.cluster_path}:{self.size}:{'p' if self.placeholder else 'f'}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return False  # data servers answer whole files only

    def get_content(self) -> Download:
        if self.placeholder:
            return _Empty()
        return self.provider.open_download(self.cluster_path)

    def begin_write(self, *, content_type: str | None = None) -> _Writer:
        path = self.provider.check_writable(self.cluster_path)
        if not self.placeholder:
            raise DAVError(HTTP_FORBIDDEN, WRITE_ONCE.format(path=path, verb="overwritten"))
        length = self.environ.get("CONTENT_LENGTH", "").strip()
        self._writer = self.provider.writer(path, int(length) if length.isdigit() else None)
        return self._writer

    def end_write(self, *, with_errors: bool) -> None:
        if with_errors and self._writer is not None:
            self._writer.abort()

    def delete(self) -> None:
        if self.placeholder and not self.provider.read_only and self.provider.drop_placeholder(self.cluster_path):
            self.remove_all_properties(recursive=True)
            self.remove_all_locks(recursive=True)
            return
        raise DAVError(HTTP_FORBIDDEN, WRITE_ONCE.format(path=self.cluster_path, verb="deleted"))

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        raise DAVError(HTTP_FORBIDDEN, NO_COPY_MOVE.format(path=self.cluster_path))

    def handle_move(self, dest_path: str) -> bool:
        raise DAVError(HTTP_FORBIDDEN, NO_COPY_MOVE.format(path=self.cluster_path))


class _Empty:
    """The content of a placeholder."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass
