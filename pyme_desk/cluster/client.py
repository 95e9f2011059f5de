"""The cluster client: read, write, list and locate files across a cluster's data servers.

Semantics follow PYME's clusterIO (protocol.md §3) so scripts port over; what we do better:

* servers come from an explicit list or from a live :class:`~pyme_desk.discovery.browser.ServiceBrowser`
  (no fixed sleeps); the browser starts on first use, never at import;
* a new file goes to the least recently used server that is responsive and has room for it
  (``/__status`` ``Disk.free`` minus a margin), and an upload whose connection fails is retried
  on another server;
* before a PUT the (cached) cluster listing is checked, so a name that exists on *another*
  server is refused too, instead of becoming a second copy;
* listings are cached for ``listing_cache_s`` seconds per server (then dropped) and updated by
  our own writes, so we read our own writes at once; a cached "not found" is confirmed with a
  fresh listing;
* every request has a time-out, every failure raises a :class:`ClusterError` that names the
  server and, where it gave one, its reason;
* results are sent as ``.npy``/JSON/text, never as pickles.

Thread safety: one client may be used from many threads.  HTTP goes through
:class:`~pyme_desk.cluster.transport.Transport` (one requests.Session per thread, one keep-alive
pool per server inside it); caches are guarded by a lock; fan-out requests (listings, globs,
status) run on the client's own small thread pool.
"""
from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar
from urllib.parse import quote, urlsplit

from pyme_desk.cluster.choice import DEFAULT_DISK_MARGIN, ServerChooser
from pyme_desk.cluster.errors import (ClusterError, ClusterFileExistsError, ClusterFileNotFoundError,
                                      InvalidNameError, NoServersError, PutFilesError, ServerError,
                                      ServerUnreachableError)
from pyme_desk.cluster.listing import (FILETYPE_DIRECTORY, FILETYPE_NORMAL, Entry, Listing,
                                       ListingFormatError, frame_index, frame_name, frames_from, merge_listings,
                                       parse_listing)
from pyme_desk.cluster.pipeline import put_pipelined
from pyme_desk.cluster.results import serialise_results
from pyme_desk.cluster.transport import Transport, response_reason
from pyme_desk.cluster.uris import ClusterURI, HttpURI, parse_uri, split_path, validate_name

log = logging.getLogger(__name__)

HTTP_PROTOCOL = "_pyme-http"
AGGREGATE_PREFIX = "__aggregate_"
#: File types whose inner parts (``x.h5r/FitResults.npy``, ``x.h5/frame00000.pzf``) the server serves.
CONTAINER_SUFFIXES = (".h5r", ".hdf", ".h5")
#: Servers tried for one upload before giving up.
PUT_ATTEMPTS = 3
#: How long a ``/__status`` answer is reused.
STATUS_CACHE_S = 1.0
#: Requests run at once when asking every server (as PYME's pool of 10).
FAN_OUT_THREADS = 10
_MAX_CACHED_LISTINGS = 4096
_MAX_CACHED_LOCATIONS = 10000
#: frames located ahead of the one asked for, from one listing (see _find_frame_holders)
_FRAMES_REMEMBERED = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterStat:
    """What the cluster listing says about one path; ``size`` is bytes, or entries for a directory."""

    path: str
    type: int
    size: int

    @property
    def is_dir(self) -> bool:
        return Entry(self.type, self.size).is_dir

    @property
    def is_series(self) -> bool:
        return Entry(self.type, self.size).is_series

    @property
    def is_complete(self) -> bool:
        return Entry(self.type, self.size).is_complete


@dataclass
class _CachedListing:
    fetched_at: float
    listing: Listing | None  # None: the directory does not exist on that server
    latency: float


class ClusterClient:
    """A client for one cluster (the data servers whose names match ``server_filter``).

    ``servers``: explicit base URLs (``http://host:port/``), used as given; otherwise
    ``browser`` (anything with ``services()`` returning records with ``.url`` and
    ``wait_for(n, timeout)``, already started); otherwise a ServiceBrowser for
    ``server_filter`` is started on first use.  ``server_filter`` and ``token`` default to the
    configuration (``dataserver-filter``, ``desk-cluster-token``).  ``local_root``: this
    machine's data root, read directly for files it holds.  ``timeout`` bounds every read
    and write (s); ``disk_margin`` is the free space (bytes) a server must keep after a write.
    """

    def __init__(self, servers: Iterable[str] | None = None, *, server_filter: str | None = None,
                 browser: Any = None, token: str | None = None, timeout: float = 10.0,
                 listing_cache_s: float = 1.0, local_root: str | Path | None = None,
                 disk_margin: int = DEFAULT_DISK_MARGIN, status_timeout: float = 1.0,
                 discovery_wait: float = 5.0):
        if server_filter is None or token is None or (servers is None and browser is None):
            from pyme_desk.config import load_config
            config = load_config()
            server_filter = config.server_filter if server_filter is None else server_filter
            token = config.cluster_token if token is None else token
            self._static_urls = list(config.get("desk-static-dataservers") or [])
        else:
            self._static_urls = []
        self.server_filter = server_filter
        self.timeout = timeout
        self.listing_cache_s = listing_cache_s
        self.status_timeout = status_timeout
        self.discovery_wait = discovery_wait
        self.local_root = Path(local_root).resolve() if local_root is not None else None
        self._explicit = None if servers is None else [_base_url(s) for s in servers]
        self._browser = browser
        self._owns_browser = False
        self._waited_for_discovery = False
        self._transport = Transport(token=token, timeout=timeout, connect_timeout=min(3.0, timeout))
        self._chooser = ServerChooser(disk_margin)
        self._lock = threading.Lock()
        self._listings: OrderedDict[tuple[str, str], _CachedListing] = OrderedDict()
        self._locations: OrderedDict[str, list[tuple[str, float]]] = OrderedDict()
        self._aggregate_servers: dict[str, str] = {}
        self._status: tuple[float, dict[str, dict]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def token(self) -> str | None:
        return self._transport.token

    # -- servers -------------------------------------------------------------------------------

    def servers(self) -> list[str]:
        """Base URLs of the cluster's data servers, this computer's first; NoServersError if none."""
        if self._explicit is not None:
            urls = list(self._explicit)
        else:
            browser = self._discovery()
            records = browser.services()
            if not records and not self._waited_for_discovery:
                records = browser.wait_for(1, self.discovery_wait)
            self._waited_for_discovery = True
            urls = [_base_url(r.url) for r in records]
        if not urls:
            raise NoServersError(self.server_filter)
        return urls

    def _discovery(self):
        with self._lock:
            if self._browser is None:
                from pyme_desk.discovery.browser import ServiceBrowser
                browser = ServiceBrowser(HTTP_PROTOCOL, self.server_filter, static_urls=self._static_urls)
                browser.start()
                self._browser, self._owns_browser = browser, True
            return self._browser

    # -- listings ------------------------------------------------------------------------------

    def list_entries(self, path: str = "") -> Listing:
        """The merged cluster listing of a directory: ``{name: Entry}``, directories ending in ``/``.

        A directory that no server has lists as empty (as in PYME).
        """
        directory = self._cluster_path(path).rstrip("/")
        cached = self._server_listings(directory)
        with self._lock:
            return merge_listings(c.listing for c in cached.values() if c.listing)

    def list_new_frames(self, series: str, first_frame: int) -> Listing:
        """The merged listing of a series directory without its frames numbered below
        ``first_frame``: what a follower of a growing series needs, at a cost that does not
        grow with the series (our servers' ``?first_frame=`` listing; others send everything
        and the frames are left out here).  Always fetched fresh, never cached."""
        directory = self._cluster_path(series).rstrip("/")
        fetched = self._new_frame_listings(directory, first_frame, f"listing {directory!r}")
        return merge_listings(frames_from(r.listing, first_frame) for r in fetched.values() if r.listing)

    def _new_frame_listings(self, series: str, first_frame: int, what: str) -> dict[str, _CachedListing]:
        """Each server's listing of ``series`` from frame ``first_frame`` on (``?first_frame=``;
        servers that do not know it send everything), fetched fresh."""
        params = {"first_frame": str(max(int(first_frame), 0))}
        return self._answers(self._fan_out(lambda s: self._fetch_listing(s, series, params), self.servers()), what)

    def listdir(self, path: str = "") -> list[str]:
        """Sorted names in a directory across all servers; directories end in ``/``."""
        return list(self.list_entries(path))

    def isdir(self, path: str) -> bool:
        entry = self._entry(self._cluster_path(path), confirm_miss=True)
        return entry is not None and entry.is_dir

    def exists(self, path: str) -> bool:
        return self._entry(self._cluster_path(path), confirm_miss=True) is not None

    def stat(self, path: str) -> ClusterStat:
        """Type bits and size from the listing; ClusterFileNotFoundError if nothing has that name."""
        cluster_path = self._cluster_path(path)
        entry = self._entry(cluster_path, confirm_miss=True)
        if entry is None:
            raise ClusterFileNotFoundError(f"{cluster_path!r} not found on cluster {self.server_filter!r}")
        return ClusterStat(cluster_path.rstrip("/"), entry.type, entry.size)

    def walk(self, top: str = "") -> Iterator[tuple[str, list[str], list[str]]]:
        """Like os.walk, top-down: ``(dirpath, dirnames, filenames)`` with names lacking ``/``."""
        top = self._cluster_path(top).rstrip("/")
        entries = self.list_entries(top)
        dirs = [n[:-1] for n in entries if n.endswith("/")]
        files = [n for n in entries if not n.endswith("/")]
        yield top, dirs, files
        for d in dirs:
            yield from self.walk(f"{top}/{d}" if top else d)

    def glob(self, pattern: str) -> list[str]:
        """Paths matching a glob pattern (relative to the cluster root) on any server, sorted."""
        def ask(server: str) -> list[str]:
            r = self._transport.get(server + "__glob", params={"pattern": pattern})
            if r.status_code != 200:
                raise ServerError(r.url, r.status_code, response_reason(r))
            try:
                return [str(p).replace("\\", "/") for p in r.json()]
            except (ValueError, TypeError):
                raise ClusterError(f"{r.url}: glob answer is not a JSON list") from None

        answers = self._answers(self._fan_out(ask, self.servers()), f"glob {pattern!r}")
        return sorted(set().union(*answers.values()))

    def _entry(self, path: str, *, confirm_miss: bool) -> Entry | None:
        """The listing entry for ``path`` (its parent's listing), None if absent."""
        if not path.rstrip("/"):
            return Entry(FILETYPE_DIRECTORY, 0)
        parent, name = split_path(path)
        want_dir = path.endswith("/")
        keys = (name + "/",) if want_dir else (name + "/", name)
        for max_age in (self.listing_cache_s, 0.0) if confirm_miss else (self.listing_cache_s,):
            cached = self._server_listings(parent, max_age)
            with self._lock:
                merged = merge_listings({k: c.listing[k] for k in keys if k in c.listing}
                                        for c in cached.values() if c.listing)
            for k in keys:
                if k in merged:
                    return merged[k]
        return None

    def _server_listings(self, directory: str, max_age: float | None = None) -> dict[str, _CachedListing]:
        """Each server's (cached) listing of ``directory``.

        Unreachable or failing servers are logged and left out; if every server fails, the
        first failure is raised.
        """
        max_age = self.listing_cache_s if max_age is None else max_age
        return self._answers(self._fan_out(lambda s: self._server_listing(s, directory, max_age),
                                           self.servers()), f"listing {directory!r}")

    @staticmethod
    def _answers(results: dict[str, Any], what: str) -> dict[str, Any]:
        """The servers' answers that are not exceptions; failures are logged, and if every
        server failed, the first failure is raised."""
        failures = [r for r in results.values() if isinstance(r, Exception)]
        if failures and len(failures) == len(results):
            raise failures[0]
        for server, r in results.items():
            if isinstance(r, Exception):
                log.warning("%s on %s: %s", what, server, r)
        return {s: r for s, r in results.items() if not isinstance(r, Exception)}

    def _server_listing(self, server: str, directory: str, max_age: float) -> _CachedListing:
        """One server's listing, from the cache when younger than ``max_age`` s.

        The returned object is the cached one, which our writes update in place: read its
        ``listing`` only while holding ``self._lock``.
        """
        key = (server, directory)
        with self._lock:
            cached = self._listings.get(key)
            if cached is not None and time.monotonic() - cached.fetched_at <= max_age:
                self._listings.move_to_end(key)
                return cached
        fresh = self._fetch_listing(server, directory)
        with self._lock:
            self._forget_stale_listings()
            self._listings[key] = fresh
            self._listings.move_to_end(key)
            while len(self._listings) > _MAX_CACHED_LISTINGS:
                self._listings.popitem(last=False)
        return fresh

    def _fetch_listing(self, server: str, directory: str, params: dict | None = None) -> _CachedListing:
        """GET one server's listing of ``directory`` (not cached); a None listing: absent."""
        url = server + (quote(directory, safe="/") + "/" if directory else "")
        started = time.monotonic()
        r = self._transport.get(url, params=params)
        latency = time.monotonic() - started
        if r.status_code == 200:
            try:
                listing: Listing | None = parse_listing(r.content)
            except ListingFormatError as e:
                raise ClusterError(f"{url}: unusable directory listing: {e}") from None
        elif r.status_code in (404, 301):  # absent, or a file of that name
            listing = None
        else:
            raise ServerError(url, r.status_code, response_reason(r))
        return _CachedListing(started, listing, latency)

    def _forget_stale_listings(self) -> None:
        """Drop the listings too old ever to be served again (call with the lock held): kept,
        they would hold the largest directories ever listed, such as a long series, in memory."""
        oldest = time.monotonic() - self.listing_cache_s
        for key in [k for k, c in self._listings.items() if c.fetched_at < oldest]:
            del self._listings[key]

    # -- locating and reading ------------------------------------------------------------------

    def locate_file(self, path: str) -> list[tuple[str, float]]:
        """``[(url, listing latency s), ...]`` of every server holding ``path``, fastest first.

        A path inside an ``.h5r``/``.h5`` file (``x.h5r/FitResults.npy``) is located by that
        file.  Non-empty answers are remembered (files never move: write-once).
        """
        path = self._cluster_path(path).rstrip("/")
        return [(server + quote(path, safe="/"), latency) for server, latency in self._locate(path)]

    def _locate(self, path: str) -> list[tuple[str, float]]:
        """``[(server base URL, latency), ...]`` for locate_file()."""
        holder = _container(path)
        with self._lock:
            known = self._locations.get(holder)
            if known is not None:
                return list(known)
        known = self._find_holders(holder, self.listing_cache_s) or self._find_holders(holder, 0.0)
        if known:
            self._remember_locations(holder, known)
        return known

    def _find_holders(self, path: str, max_age: float) -> list[tuple[str, float]]:
        parent, name = split_path(path)
        first = frame_index(name)
        if first is not None:
            return self._find_frame_holders(parent, name, first)

        def has_file(server: str) -> float | None:
            cached = self._server_listing(server, parent, max_age)
            with self._lock:
                return cached.latency if cached.listing and name in cached.listing else None

        answers = self._answers(self._fan_out(has_file, self.servers()), f"locating {path!r}")
        found = [(s, r) for s, r in answers.items() if r is not None]
        return sorted(found, key=lambda item: item[1])

    def _find_frame_holders(self, series: str, name: str, first: int) -> list[tuple[str, float]]:
        """Where frame ``first`` of a series is, from each server's listing of the frames from
        that one on (``?first_frame=``): the listing of a series being analysed while it is
        spooled stays short however long the series grows.  The frames after it that the
        answer shows are remembered too, so the next ones are located without another listing."""
        answers = self._new_frame_listings(series, first, f"locating {name!r} in {series!r}")
        where: dict[int, list[tuple[str, float]]] = {}
        for server, fetched in answers.items():
            for other in fetched.listing or ():
                index = frame_index(other)
                if index is not None and first <= index < first + _FRAMES_REMEMBERED:  # PYME's send all
                    where.setdefault(index, []).append((server, fetched.latency))
        prefix = f"{series}/" if series else ""
        with self._lock:
            for index in sorted(where, reverse=True):  # the requested frame ends up most recent
                self._remember_locked(prefix + frame_name(index), sorted(where[index], key=lambda item: item[1]))
        return list(where.get(first, []))

    def _remember_locations(self, path: str, locations: list[tuple[str, float]]) -> None:
        with self._lock:
            self._remember_locked(path, locations)

    def _remember_locked(self, path: str, locations: list[tuple[str, float]]) -> None:
        self._locations[path] = locations
        self._locations.move_to_end(path)
        while len(self._locations) > _MAX_CACHED_LOCATIONS:
            self._locations.popitem(last=False)

    def get_file(self, path: str) -> bytes:
        """The content of a cluster file (or of an ``http://`` data-server URL).

        Read from ``local_root`` when it holds the file, else from the fastest server holding it;
        ClusterFileNotFoundError when no server does.
        """
        target = parse_uri(path)
        if isinstance(target, HttpURI):
            return self._get_url(str(target))
        path = self._cluster_path(path)
        local = self._local_file(path)
        if local is not None:
            return local
        locations = self.locate_file(path)
        if not locations:
            raise ClusterFileNotFoundError(
                f"{path!r} not found on cluster {self.server_filter!r} ({len(self.servers())} server(s) asked)")
        errors: list[ClusterError] = []
        for url, _latency in locations:
            try:
                return self._get_url(url)
            except (ServerUnreachableError, ClusterFileNotFoundError) as e:
                errors.append(e)
        with self._lock:  # the remembered locations failed: look afresh next time
            self._locations.pop(_container(path.rstrip("/")), None)
        raise errors[-1]

    def _get_url(self, url: str) -> bytes:
        r = self._transport.get(url)
        if r.status_code == 200:
            return r.content
        if r.status_code == 404:
            raise ClusterFileNotFoundError(f"{url}: not found ({response_reason(r)})")
        if r.status_code == 301:
            raise ClusterError(f"{url} is a directory, not a file")
        raise ServerError(url, r.status_code, response_reason(r))

    def _local_file(self, path: str) -> bytes | None:
        if self.local_root is None:
            return None
        candidate = (self.local_root / path).resolve()
        if not candidate.is_relative_to(self.local_root) or not candidate.is_file():
            return None
        try:
            return candidate.read_bytes()
        except OSError:
            return None

    # -- writing -------------------------------------------------------------------------------

    def put_file(self, path: str, data: bytes) -> str:
        """Store a new (write-once) file on one server and return its URL.

        ClusterFileExistsError if the name is taken anywhere on the cluster (as the listing
        shows it, cached up to ``listing_cache_s``; the server itself refuses a name it holds);
        a failed connection is retried on another server (up to 3 servers).
        """
        path = validate_name(self._cluster_path(path))
        data = bytes(data)
        self._refuse_existing([path])
        tried: set[str] = set()
        last_error: ClusterError | None = None
        for _ in range(PUT_ATTEMPTS):
            server = self._choose(len(data), exclude=tried)
            url = server + quote(path, safe="/")
            try:
                r = self._transport.put(url, data)
            except ServerUnreachableError as e:
                tried.add(server)
                last_error = e
                continue
            if r.status_code == 405:
                raise ClusterFileExistsError(f"{path!r} already exists on {server} ({response_reason(r)})")
            if r.status_code != 200:
                raise ServerError(url, r.status_code, response_reason(r))
            self._note_write(server, path, len(data))
            return url
        raise ServerUnreachableError(f"could not store {path!r}: {last_error}")

    def put_files(self, files: Sequence[tuple[str, bytes]]) -> list[str]:
        """Store many new files, pipelined on one connection to one server; return their URLs.

        Any refusal raises PutFilesError naming each refused path and the server's reason
        (files accepted before it stay stored); files left unanswered by a broken connection
        are sent again to another server.
        """
        batch = [(validate_name(self._cluster_path(p)), bytes(d)) for p, d in files]
        names = [p for p, _ in batch]
        if len(set(names)) != len(names):
            dupes = sorted({p for p in names if names.count(p) > 1})
            raise InvalidNameError(f"the same path appears more than once in one put_files call: {dupes[:5]}")
        self._refuse_existing(names)
        urls: list[str] = []
        tried: set[str] = set()
        last_error: BaseException | None = None
        remaining = batch
        for _ in range(PUT_ATTEMPTS):
            if not remaining:
                break
            server = self._choose(sum(len(d) for _, d in remaining), exclude=tried)
            result = put_pipelined(server, remaining, token=self.token,
                                   connect_timeout=self._transport.connect_timeout,
                                   timeout=max(30.0, self.timeout))
            failures: dict[str, str] = {}
            for (path, data), (status, body) in zip(remaining, result.responses):
                if status == 200:
                    self._note_write(server, path, len(data))
                    urls.append(server + quote(path, safe="/"))
                else:
                    failures[path] = f"HTTP {status}: {_body_reason(body)}"
            remaining = remaining[len(result.responses):]
            if failures:
                for path, _ in remaining:
                    failures[path] = f"not sent: {result.error or 'connection closed'}"
                raise PutFilesError(server, failures)
            if remaining:
                tried.add(server)
                last_error = result.error
                log.warning("put_files: %s broke off after %d file(s) (%s); retrying %d elsewhere",
                            server, len(result.responses), result.error, len(remaining))
        if remaining:
            raise ServerUnreachableError(f"could not store {len(remaining)} of {len(batch)} file(s): {last_error}")
        return urls

    def mirror_file(self, path: str) -> str:
        """Copy a file to one more server (one that lacks it), server to server; return the new URL."""
        path = self._cluster_path(path).rstrip("/")
        locations = self._locate(path)
        if not locations:
            raise ClusterFileNotFoundError(f"{path!r} not found on cluster {self.server_filter!r}")
        size = self.stat(path).size
        server = self._choose(size, exclude={s for s, _ in locations})
        source = locations[0][0] + quote(path, safe="/")
        url = f"{server}{quote(path, safe='/')}?MirrorSource={quote(source, safe='')}"
        r = self._transport.put(url, b"")
        if r.status_code == 405:
            raise ClusterFileExistsError(f"{path!r} already exists on {server}")
        if r.status_code != 200:
            raise ServerError(url, r.status_code, response_reason(r))
        self._note_write(server, path, size)
        return server + quote(path, safe="/")

    def _refuse_existing(self, paths: Sequence[str]) -> None:
        by_parent: dict[str, list[str]] = {}
        for p in paths:
            parent, name = split_path(p)
            by_parent.setdefault(parent, []).append(name)
        taken = []
        for parent, names in by_parent.items():
            listings = self._server_listings(parent).values()
            with self._lock:
                held = [c.listing for c in listings if c.listing]
                taken += [f"{parent}/{n}" if parent else n for n in names
                          if any(n in l or n + "/" in l for l in held)]
        if taken:
            raise ClusterFileExistsError(
                f"already on cluster {self.server_filter!r} (files are write-once): {', '.join(taken[:5])}"
                + (f" and {len(taken) - 5} more" if len(taken) > 5 else ""))

    def _choose(self, need_bytes: int, exclude: set[str] | frozenset[str] = frozenset()) -> str:
        servers = self.servers()
        statuses = self._statuses()
        return self._chooser.choose(servers, statuses=statuses, need_bytes=need_bytes, exclude=exclude)

    def _note_write(self, server: str, path: str, size: int) -> None:
        """Make our caches show a file we just stored: parent listing, locations, free disk."""
        parent, name = split_path(path)
        with self._lock:
            cached = self._listings.get((server, parent))
            if cached is not None:
                listing = cached.listing if cached.listing is not None else {}
                listing[name] = Entry(FILETYPE_NORMAL, size)
                cached.listing = listing
            ancestor = parent
            while ancestor:
                ancestor = split_path(ancestor)[0]
                self._listings.pop((server, ancestor), None)
            known = self._locations.get(path, [])
            if all(s != server for s, _ in known):
                self._remember_locked(path, known + [(server, 0.0)])
            if self._status is not None:
                disk = self._status[1].get(server, {}).get("Disk")
                if isinstance(disk, dict) and isinstance(disk.get("free"), (int, float)):
                    disk["free"] -= size

    # -- results -------------------------------------------------------------------------------

    def aggregate_url(self, uri: str) -> str:
        """The concrete ``http://server/__aggregate_.../<file>/<part>`` URL for an aggregate URI.

        The server is the one already holding the target file, else a least-recently-used
        choice; it is remembered so every later append goes to the same server.  ClusterError
        if the file exists on more than one server.
        """
        target = parse_uri(uri)
        if isinstance(target, HttpURI):
            return str(target)
        path = self._cluster_path(uri)
        if not path.startswith(AGGREGATE_PREFIX):
            raise InvalidNameError(f"{uri!r} is not an aggregate path ({AGGREGATE_PREFIX}txt|h5r|h5/...)")
        validate_name(path)
        endpoint, _, rest = path.partition("/")
        target_file = _container(rest)
        with self._lock:
            server = self._aggregate_servers.get(target_file)
        if server is None:
            holders = self._find_holders(target_file, 0.0)
            if len(holders) > 1:
                raise ClusterError(f"{target_file!r} exists on {len(holders)} servers "
                                   f"({', '.join(s for s, _ in holders)}); results must live on one")
            server = holders[0][0] if holders else self._choose(0)
            with self._lock:
                server = self._aggregate_servers.setdefault(target_file, server)
        return server + quote(path, safe="/")

    def file_results(self, uri: str, data: Any) -> str:
        """Serialise ``data`` for the target's extension and send it; return the URL written.

        Aggregate URIs (``pyme-cluster://f/__aggregate_h5r/x.h5r/FitResults``) and ``http://``
        URLs are PUT gzip-compressed to one concrete server; other cluster paths are stored
        as new write-once files.
        """
        target = parse_uri(uri)
        path = target.path if isinstance(target, (ClusterURI, HttpURI)) else target
        body = serialise_results(path, data)
        if not isinstance(target, HttpURI) and not path.startswith(AGGREGATE_PREFIX):
            return self.put_file(self._cluster_path(uri), body)
        url = self.aggregate_url(uri)
        r = self._transport.put(url, gzip.compress(body, compresslevel=1),
                                headers={"Content-Encoding": "gzip"})
        if r.status_code != 200:
            raise ServerError(url, r.status_code, response_reason(r))
        if path.startswith(AGGREGATE_PREFIX):
            self._note_aggregate(url, path)
        return url

    def _note_aggregate(self, url: str, path: str) -> None:
        server = _base_url(url)
        target_file = _container(path.partition("/")[2])
        with self._lock:
            self._listings.pop((server, split_path(target_file)[0]), None)
            self._remember_locked(target_file, [(server, 0.0)])

    # -- status --------------------------------------------------------------------------------

    def get_status(self) -> list[dict]:
        """Each server's ``/__status`` plus ``Responsive``, ``IPAddress``, ``Port``, ``URL`` and
        ``Cluster``; an unreachable server is ``{"Responsive": False, ...}``.  Cached 1 s."""
        statuses = self._statuses()
        return [_status_copy(doc) for doc in statuses.values()]

    def _statuses(self) -> dict[str, dict]:
        servers = self.servers()
        with self._lock:
            if (self._status is not None and time.monotonic() - self._status[0] <= STATUS_CACHE_S
                    and list(self._status[1]) == servers):
                return self._status[1]
        results = self._fan_out(self._one_status, servers)
        statuses = {s: r if isinstance(r, dict) else self._identity(s, False) for s, r in results.items()}
        with self._lock:
            self._status = (time.monotonic(), statuses)
        return statuses

    def _one_status(self, server: str) -> dict:
        try:
            r = self._transport.get(server + "__status", timeout=self.status_timeout)
            doc = r.json() if r.status_code == 200 else None
        except (ClusterError, ValueError) as e:
            log.debug("status of %s: %s", server, e)
            doc = None
        if not isinstance(doc, dict):
            return self._identity(server, False)
        doc.update(self._identity(server, True))
        return doc

    def _identity(self, server: str, responsive: bool) -> dict:
        parts = urlsplit(server)
        return {"IPAddress": parts.hostname, "Port": parts.port, "URL": server,
                "Cluster": self.server_filter, "Responsive": responsive}

    # -- plumbing ------------------------------------------------------------------------------

    def _cluster_path(self, path: str) -> str:
        """The cluster path of a plain path or a ``pyme-cluster://`` URI of this cluster."""
        target = parse_uri(path)
        if isinstance(target, HttpURI):
            raise InvalidNameError(f"{path!r} is an http URL; this operation takes a cluster path")
        if isinstance(target, ClusterURI):
            if target.server_filter not in ("", self.server_filter):
                raise InvalidNameError(f"{path!r} names cluster {target.server_filter!r}, "
                                       f"but this client serves {self.server_filter!r}")
            return target.path
        return target

    def _fan_out(self, fn: Callable[[str], T], servers: Sequence[str]) -> dict[str, T | Exception]:
        """``fn(server)`` for every server in parallel; exceptions are returned, not raised."""
        def call(server: str) -> T | Exception:
            try:
                return fn(server)
            except ClusterError as e:
                return e

        if len(servers) == 1:
            return {servers[0]: call(servers[0])}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(FAN_OUT_THREADS, thread_name_prefix="pyme-desk-cluster")
            pool = self._pool
        futures = {s: pool.submit(call, s) for s in servers}
        return {s: f.result() for s, f in futures.items()}

    def close(self) -> None:
        """Stop the fan-out threads and a browser this client started; the client stays usable."""
        with self._lock:
            pool, self._pool = self._pool, None
            browser = self._browser if self._owns_browser else None
            if browser is not None:
                self._browser, self._owns_browser = None, False
                self._waited_for_discovery = False
        if pool is not None:
            pool.shutdown(wait=True)
        if browser is not None:
            browser.stop()

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _base_url(url: str) -> str:
    """``http://host:port/`` for any URL on that server."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidNameError(f"data server URL must look like http://host:port/, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}/"


def _container(path: str) -> str:
    """The file that holds ``path``: ``a/x.h5r`` for ``a/x.h5r/FitResults``, else ``path``."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.endswith(CONTAINER_SUFFIXES):
            return "/".join(parts[: i + 1])
    return path


def _status_copy(doc: dict) -> dict:
    copy = dict(doc)
    if isinstance(copy.get("Disk"), dict):
        copy["Disk"] = dict(copy["Disk"])
    return copy


def _body_reason(body: bytes) -> str:
    import json
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace").strip() or "no reason given"
