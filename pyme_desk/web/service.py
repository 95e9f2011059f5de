"""Run an HTTP application on its own thread and event loop, with a ready/stop lifecycle.

Every pyme-desk server (data, rule, node) is a plain object that owns one of these: ``start()``
returns once the socket listens and the server's own start-up hook has run, so callers never
guess with sleeps; ``stop()`` lets requests in flight finish, then runs the shut-down hook.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from pyme_desk.errors import UsageError
from pyme_desk.web.http import HTTPServer

log = logging.getLogger(__name__)


class BackgroundServer:
    """Serve ``app_factory()`` on (bind, port) from a daemon thread.

    ``on_started(port)`` runs on a helper thread after the socket listens and before
    ``start()`` returns (advertise, start samplers); ``on_stopped()`` runs after the last
    request is answered (withdraw adverts, flush files).
    """

    def __init__(self, app_factory: Callable[[], object], bind: str, port: int, *, name: str,
                 on_started: Callable[[int], None] | None = None,
                 on_stopped: Callable[[], None] | None = None) -> None:
        self.app_factory = app_factory
        self.bind = bind
        self.port = port
        self.name = name
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._grace = 10.0

    def start(self, timeout: float = 30.0) -> int:
        """Listen and run the start-up hook; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise UsageError(f"the {self.name} did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(5)
            err = self._error
            if isinstance(err, OSError):
                raise UsageError(f"cannot listen on {self.bind}:{self.port}: {err.strerror or err}") from None
            raise err
        return self.port

    def stop(self, grace: float = 10.0) -> None:
        """Finish requests in flight (up to ``grace`` s), then run the shut-down hook."""
        if self.loop is None or self._thread is None or not self._thread.is_alive():
            return
        self._grace = grace
        if self._stop_event is not None:
            self.loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(grace + 30)

    def call_soon(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the server's event loop (thread-safe)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                log.exception("the %s stopped with an error", self.name)
        finally:
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        http = HTTPServer(self.app_factory(), loop)
        _, self.port = await http.listen(self.bind, self.port)
        try:
            if self.on_started is not None:
                await loop.run_in_executor(None, self.on_started, self.port)
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await http.shutdown(self._grace)
            if self.on_stopped is not None:
                await loop.run_in_executor(None, self.on_stopped)


class ServerObject:
    """What every server object built on :class:`BackgroundServer` shares: stop and ``with``.

    Subclasses define ``start()`` (returning self) and keep their BackgroundServer in
    ``self._service``; a server with more to shut down overrides ``stop()``.
    """

    _service: BackgroundServer

    def start(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def stop(self, grace: float = 10.0) -> None:
        """Finish requests in flight (up to ``grace`` s), then run the server's shut-down hook."""
        self._service.stop(grace)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
