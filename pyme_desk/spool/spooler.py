"""Spool a live image series into the cluster, laid out as protocol.md §4 describes.

A :class:`Spooler` takes frames from the caller (a camera loop, a simulator, a file reader),
PZF-encodes them on its own threads and PUTs them to the data servers over one persistent
pipelined connection per server (:mod:`pyme_desk.spool.streams`):

* ``metadata.json`` first (synchronously, in :meth:`Spooler.start`);
* ``frame%05d.pzf`` for frame ``i`` on server ``floor(i / chunk) mod n`` (chunk = config
  ``httpspooler-chunksize``, 50), servers in the order given or discovered;
* at :meth:`Spooler.finish`, once every frame's PUT has been answered 200:
  ``final_metadata.json``, then ``events.json`` last and exactly once (the completion marker).

Unlike PYME's spooler nothing fails silently: the caller is held back (or told, with
:class:`SpoolQueueFull`) when ``max_queue`` frames are waiting, a refused or unanswered PUT is
sent again to another server, a server that cannot be reached is dropped from the rotation,
and every such failure is listed in :meth:`Spooler.stats`.  Frames that no server would take
make :meth:`Spooler.finish` raise :class:`SpoolError` (and the series is then left without
``events.json``, i.e. incomplete).

HDF mode (``aggregate_h5=True``, §4.4) sends every part to one server as
``__aggregate_h5/<series>.h5/<part>``, which packs the series into one ``.h5`` file.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.uris import validate_name
from pyme_desk.formats import pzf
from pyme_desk.spool.streams import PutItem, ServerStream
from pyme_desk.storage.listing import frame_name

log = logging.getLogger(__name__)

#: Metadata keys the spooler always writes (protocol.md §4.2): a time series, one colour, one plane.
SERIES_SHAPE_METADATA = {"DimOrder": "XYCZT", "SizeC": 1, "SizeT": -1, "SizeZ": 1}
#: PZF pixel types (protocol.md §5.1).
FRAME_DTYPES = (np.dtype("uint8"), np.dtype("uint16"), np.dtype("float32"))
#: Longest event name and description PYME stores (protocol.md §4.2).
EVENT_NAME_MAX, EVENT_DESCR_MAX = 32, 256


class SpoolError(Exception):
    """The series could not be spooled as asked; ``failures`` lists what went wrong."""

    def __init__(self, message: str, failures: tuple[str, ...] = ()):
        super().__init__(message)
        self.failures = failures


class SpoolQueueFull(SpoolError):
    """``put_frame`` would have to wait for room in the queue and was told not to (or timed out)."""


@dataclass(frozen=True)
class SpoolStats:
    """A snapshot of a spooler's counters (for progress bars and the GUI).

    ``frames_sent`` and ``bytes_sent`` count PUTs the servers confirmed (``bytes_sent`` is PZF
    bytes on the wire); ``mb_per_s`` is ``bytes_sent`` (10^6 bytes) per second since the first
    frame was queued (until the last was confirmed, once finished); ``queue_depth`` is frames
    accepted but not yet confirmed; ``errors`` lists every failed PUT (each was retried
    elsewhere unless ``frames_failed`` counts it); ``per_server`` maps server URL to frames stored.
    """

    frames_queued: int
    frames_sent: int
    bytes_sent: int
    mb_per_s: float
    queue_depth: int
    errors: tuple[str, ...]
    per_server: dict[str, int] = field(default_factory=dict)
    frames_failed: int = 0
    servers_dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpoolReport:
    """What :meth:`Spooler.finish` achieved."""

    uri: str
    series: str
    frames: int
    bytes_sent: int
    seconds: float
    mb_per_s: float
    per_server: dict[str, int]
    errors: tuple[str, ...]


def new_image_id() -> int:
    """A fresh positive 63-bit sequence id for the metadata's ``imageID`` and PZF headers."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """Flat metadata as PYME writes it: sorted keys, indent 2 (numpy values made plain)."""
    return json.dumps(metadata, sort_keys=True, indent=2, default=_plain).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"metadata value {value!r} ({type(value).__name__}) cannot be written as JSON")


@dataclass(eq=False)
class _FrameJob:
    index: int
    frame: np.ndarray | None
    timestamp: int
    raw_bytes: int


class Spooler:
    """Spools one series; see the module docstring.  Thread-safe ``put_frame``/``add_event``.

    Servers come from ``client`` (a :class:`ClusterClient`), else from ``servers`` (URLs), else
    from discovery for ``server_filter`` (config ``dataserver-filter``).  ``token`` defaults to
    the client's (config ``desk-cluster-token``).  ``put_timeout`` (s) bounds how long a PUT may
    wait for its answer before it is sent elsewhere.
    """

    def __init__(self, series: str, metadata: dict, *, servers: list[str] | None = None,
                 client: ClusterClient | None = None, server_filter: str | None = None,
                 chunk_size: int | None = None, compression: str = "huffcode",
                 quantization: str | None = None, quant_offset: float = 0.0, quant_scale: float = 1.0,
                 aggregate_h5: bool = False, max_queue: int = 200, token: str | None = None,
                 put_timeout: float = 30.0) -> None:
        if client is None:
            client = ClusterClient(servers=servers, server_filter=server_filter, token=token)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        series = validate_name(series.replace("\\", "/")).rstrip("/")
        if aggregate_h5 and not series.endswith(".h5"):
            series += ".h5"
        self.series = series
        self.aggregate_h5 = aggregate_h5
        self.server_filter = client.server_filter if server_filter is None else server_filter
        self.uri = f"PYME-CLUSTER://{self.server_filter}/{series}"
        if chunk_size is None:
            from pyme_desk.config import load_config
            chunk_size = int(load_config().get("httpspooler-chunksize"))
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self.chunk_size = chunk_size
        self.max_queue = max_queue
        self.put_timeout = put_timeout
        self._token = token if token is not None else client.token
        self.image_id = int(metadata.get("imageID", new_image_id()))
        self.metadata = {**dict(metadata), **SERIES_SHAPE_METADATA, "imageID": self.image_id}
        self._encoding = dict(compression=compression, quantization=quantization,
                              quant_offset=quant_offset, quant_scale=quant_scale)
        # Refuse a bad compression/quantization combination now, not on the encoder threads.
        pzf.encode(np.zeros((1, 1), np.uint16), **self._encoding)

        self._cond = threading.Condition()
        self._state = "new"  # new -> running -> finishing -> finished | aborted
        self._next_index = 0
        self._outstanding = 0
        self._frames_sent = 0
        self._frames_failed = 0
        self._bytes_sent = 0
        self._per_server: dict[str, int] = {}
        self._errors: list[str] = []
        self._failures: list[str] = []
        self._dropped: list[str] = []
        self._events: list[list] = []
        self._first_frame_at: float | None = None
        self._last_confirm_at: float | None = None
        self._started_at: float | None = None
        self._servers: list[str] = []
        self._streams: dict[str, ServerStream] = {}
        self._jobs: queue.Queue[_FrameJob | None] = queue.Queue()
        self._encoders: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the servers and write ``metadata.json``; frames may be put afterwards.

        SpoolError if the series already exists on the cluster or no server takes the metadata.
        """
        with self._cond:
            if self._state != "new":
                raise SpoolError(f"spooler for {self.series} was already started")
            self._state = "starting"
        try:
            self._servers = self.client.servers()
            if self.client.exists(self.series):
                raise SpoolError(f"series {self.series!r} already exists on cluster "
                                 f"{self.client.server_filter!r}; choose a new name")
            if self.aggregate_h5:  # every part of an .h5 series goes to one server
                self._servers = [random.choice(self._servers)]
            for url in self._servers:
                self._streams[url] = ServerStream(url, token=self._token, timeout=self.put_timeout,
                                                  on_dead=self._server_dead)
            self._started_at = time.time()
            self.metadata.setdefault("StartTime", self._started_at)
            self._put_now("metadata.json", metadata_json(self.metadata))
        except BaseException:
            self._close_streams(abort=True)
            with self._cond:
                self._state = "aborted"
            if self._owns_client:
                self.client.close()
            raise
        self._events.append(["StartAq", "0", self._started_at])
        n_encoders = max(1, min(4, (os.cpu_count() or 2) - 1))
        self._encoders = [threading.Thread(target=self._encode_loop, name=f"spool-encode-{k}", daemon=True)
                          for k in range(n_encoders)]
        for t in self._encoders:
            t.start()
        with self._cond:
            self._state = "running"

    def put_frame(self, frame: np.ndarray, timestamp: int = 0, block: bool = True,
                  timeout: float | None = None) -> int:
        """Queue one ``[x, y]`` frame (copied) and return its index in the series.

        When ``max_queue`` frames are already waiting this blocks (up to ``timeout`` s), or
        with ``block=False`` raises :class:`SpoolQueueFull` at once; frames are never dropped.
        """
        frame = np.asarray(frame)
        if frame.dtype.newbyteorder("=") not in FRAME_DTYPES:
            raise ValueError(f"frames must be uint8, uint16 or float32, not {frame.dtype}")
        if frame.ndim not in (2, 3):
            raise ValueError(f"frames must be 2-D [x, y] arrays, not shape {frame.shape}")
        copy = np.array(frame, copy=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._state != "running":
                    raise SpoolError(f"cannot add frames to {self.series}: spooler is {self._state}")
                if self._outstanding < self.max_queue:
                    break
                if not block:
                    raise SpoolQueueFull(f"{self._outstanding} frames are waiting to be stored "
                                         f"(max_queue={self.max_queue})")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SpoolQueueFull(f"no room in the spool queue within {timeout:g} s "
                                         f"({self._outstanding} frames waiting)")
                self._cond.wait(remaining)
            index = self._next_index
            self._next_index += 1
            self._outstanding += 1
            if self._first_frame_at is None:
                self._first_frame_at = time.monotonic()
            self._jobs.put(_FrameJob(index, copy, int(timestamp), copy.nbytes))
        return index

    def add_event(self, name: str, description: str = "", time: float | None = None) -> None:
        """Record an event (``[name, description, time]`` in ``events.json``)."""
        import time as _time

        if len(name) > EVENT_NAME_MAX or len(description) > EVENT_DESCR_MAX:
            raise ValueError(f"event names are at most {EVENT_NAME_MAX} characters and descriptions "
                             f"at most {EVENT_DESCR_MAX}")
        with self._cond:
            if self._state not in ("new", "starting", "running"):
                raise SpoolError(f"cannot add events to {self.series}: spooler is {self._state}")
            self._events.append([str(name), str(description), _time.time() if time is None else float(time)])

    def finish(self, final_metadata: dict | None = None, timeout: float = 120) -> SpoolReport:
        """Wait for every frame to be stored, then write ``final_metadata.json`` and ``events.json``.

        SpoolError (listing the failures) if some frames could not be stored anywhere or were
        not confirmed within ``timeout`` s; the series is then left without ``events.json``.
        """
        with self._cond:
            if self._state != "running":
                raise SpoolError(f"cannot finish {self.series}: spooler is {self._state}")
            self._state = "finishing"
            self._cond.notify_all()
            confirmed = self._cond.wait_for(lambda: self._outstanding == 0, timeout)
            failures = tuple(sorted(self._failures))
            outstanding = self._outstanding
        if not confirmed or failures:
            self.abort()
            if not confirmed:
                failures += (f"{outstanding} frame(s) not confirmed within {timeout:g} s",)
            raise SpoolError(f"{self.series}: {len(failures)} problem(s); the series is incomplete: "
                             + "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""), failures)
        for _ in self._encoders:
            self._jobs.put(None)
        end = time.time()
        final = {**self.metadata, **(final_metadata or {}), **SERIES_SHAPE_METADATA,
                 "imageID": self.image_id}
        final.setdefault("EndTime", end)
        try:
            # An .h5 series has one metadata set: the final one updates it (protocol.md §4.4).
            self._put_now("metadata.json" if self.aggregate_h5 else "final_metadata.json",
                          metadata_json(final))
            with self._cond:
                events = list(self._events)
            self._put_now("events.json", json.dumps(events).encode("utf-8"))
        except SpoolError:
            self.abort()
            raise
        self._close_streams(abort=False)
        with self._cond:
            self._state = "finished"
        if self._owns_client:
            self.client.close()
        stats = self.stats()
        seconds = 0.0 if self._first_frame_at is None else (
            (self._last_confirm_at or self._first_frame_at) - self._first_frame_at)
        return SpoolReport(uri=self.uri, series=self.series, frames=stats.frames_sent,
                           bytes_sent=stats.bytes_sent, seconds=seconds, mb_per_s=stats.mb_per_s,
                           per_server=stats.per_server, errors=stats.errors)

    def abort(self) -> None:
        """Stop now: nothing more is sent and no ``events.json`` is written (series incomplete)."""
        with self._cond:
            if self._state in ("finished", "aborted"):
                return
            self._state = "aborted"
            self._cond.notify_all()
        for _ in self._encoders:
            self._jobs.put(None)
        self._close_streams(abort=True)
        for t in self._encoders:
            t.join(5.0)
        if self._owns_client:
            self.client.close()

    def stats(self) -> SpoolStats:
        with self._cond:
            elapsed = 0.0
            if self._first_frame_at is not None:
                end = self._last_confirm_at if self._state == "finished" else time.monotonic()
                elapsed = max((end or time.monotonic()) - self._first_frame_at, 1e-9)
            return SpoolStats(frames_queued=self._next_index, frames_sent=self._frames_sent,
                              bytes_sent=self._bytes_sent,
                              mb_per_s=self._bytes_sent / 1e6 / elapsed if elapsed else 0.0,
                              queue_depth=self._outstanding, errors=tuple(self._errors),
                              per_server=dict(self._per_server), frames_failed=self._frames_failed,
                              servers_dropped=tuple(self._dropped))

    def __enter__(self) -> "Spooler":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()

    # -- frames ------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        if self.aggregate_h5:
            return f"__aggregate_h5/{self.series}/{name}"
        return f"{self.series}/{name}"

    def _encode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            frame, job.frame = job.frame, None
            try:
                blob = pzf.encode(frame, sequence_id=self.image_id, frame_num=job.index,
                                  timestamp=job.timestamp, **self._encoding)
            except Exception as e:  # noqa: BLE001 - reported as this frame's failure
                self._frame_failed(job, f"{frame_name(job.index)}: cannot encode: {e}")
                continue
            del frame
            item = PutItem(self._path(frame_name(job.index)), blob, self._frame_done, tag=job)
            self._route(item)

    def _home(self, index: int, live: list[str]) -> int:
        return (index // self.chunk_size) % len(live)

    def _route(self, item: PutItem) -> None:
        """Hand ``item`` to its chunk's server, or the next live one it has not failed on."""
        job: _FrameJob = item.tag
        while True:
            with self._cond:
                aborted = self._state == "aborted"
            live = [u for u in self._servers if self._streams[u].alive]
            if aborted or not live:
                why = "spooling aborted" if aborted else "no data server left (" + "; ".join(
                    f"{u}: {self._streams[u].dead_reason}" for u in self._servers) + ")"
                self._frame_failed(job, f"{item.path}: {why}")
                return
            start = self._home(job.index, live)
            candidates = [live[(start + k) % len(live)] for k in range(len(live))]
            candidates = [u for u in candidates if u not in item.tried]
            if not candidates:
                self._frame_failed(job, f"{item.path}: every data server failed it")
                return
            target = candidates[0]
            if self._streams[target].submit(item):
                return
            item.tried.add(target)

    def _frame_done(self, item: PutItem, server: str, status: int | None, reason: str) -> None:
        job: _FrameJob = item.tag
        if status == 200:
            with self._cond:
                self._frames_sent += 1
                self._bytes_sent += len(item.body)
                self._per_server[server] = self._per_server.get(server, 0) + 1
                self._outstanding -= 1
                self._last_confirm_at = time.monotonic()
                self._cond.notify_all()
            return
        what = f"HTTP {status}: {reason}" if status is not None else reason
        with self._cond:
            aborted = self._state == "aborted"
            if not aborted:
                self._errors.append(f"{item.path} on {server}: {what}")
        if aborted:
            self._frame_failed(job, None)
            return
        item.tried.add(server)
        self._route(item)

    def _frame_failed(self, job: _FrameJob, message: str | None) -> None:
        with self._cond:
            self._outstanding -= 1
            if message is not None:
                self._frames_failed += 1
                self._failures.append(message)
                self._errors.append(message)
            self._cond.notify_all()

    def _server_dead(self, url: str, reason: str) -> None:
        with self._cond:
            self._dropped.append(url)
            self._errors.append(f"{url} dropped from the rotation: {reason}")

    # -- other files -------------------------------------------------------------------------

    def _put_now(self, name: str, body: bytes) -> None:
        """PUT a non-frame file to a random live server and wait for the answer.

        A lost connection is retried once on the same server, where a 405 then means the
        first attempt did store it (so ``events.json`` is not written twice); a server that
        refuses or is gone is replaced by the next one.  SpoolError when none stores it.
        """
        live = [u for u in self._servers if self._streams[u].alive]
        random.shuffle(live)
        path = self._path(name)
        problems = []
        for url in live:
            lost_connection = False
            for _attempt in range(2):
                status, reason = self._put_and_wait(url, path, body)
                if status == 200 or (status == 405 and lost_connection):
                    return
                problem = f"{path} on {url}: " + (f"HTTP {status}: {reason}" if status else reason)
                problems.append(problem)
                with self._cond:
                    self._errors.append(problem)
                lost_connection = status is None
                if not (lost_connection and self._streams[url].alive):
                    break
            if status == 405:  # the name exists: another server would only make a second copy
                break
        raise SpoolError(f"could not store {path}: " + ("; ".join(problems) or "no data server left"),
                         tuple(problems))

    def _put_and_wait(self, url: str, path: str, body: bytes) -> tuple[int | None, str]:
        done = threading.Event()
        answer: list[tuple[int | None, str]] = []

        def on_done(item, server, status, reason):
            answer.append((status, reason))
            done.set()

        if not self._streams[url].submit(PutItem(path, body, on_done)):
            return None, "server dropped"
        if not done.wait(self.put_timeout + 5.0):
            return None, f"no answer within {self.put_timeout + 5.0:g} s"
        return answer[0]

    def _close_streams(self, abort: bool) -> None:
        for stream in self._streams.values():
            if abort:
                stream.abort()
            else:
                stream.close(self.put_timeout)
