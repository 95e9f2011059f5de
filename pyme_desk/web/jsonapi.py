"""A JSON API on the HTTP core, with the conventions of PYME's cluster web services.

PYME's rule and node servers treat GET and POST alike, take parameters from the query string
and a (possibly gzipped) JSON body on either method, and gzip responses for clients that accept
it (python-requests always does).  A route is a function ``handler(request, body) -> object``
returning something JSON-serialisable (or a :class:`~pyme_desk.web.http.Response`).  Handlers
that block (disk, sqlite, sleeping) are declared with :func:`blocking` and run on a thread
pool; the others run in the event loop and must be quick.  Errors are JSON with a 4xx code:
raise :class:`~pyme_desk.web.errors.HTTPError`; a missing query parameter is a 400, not a 500.
"""
from __future__ import annotations

import asyncio
import gzip
import inspect
import json
import logging
from concurrent.futures import Executor
from typing import Any, Callable

from pyme_desk.web.errors import HTTPError
from pyme_desk.web.http import MemorySink, Request, Response

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024 * 1024
GZIP_MIN = 1024  # smaller responses are not worth compressing

Handler = Callable[[Request, bytes], Any]


def blocking(fn: Handler) -> Handler:
    """Mark a handler to run on the thread pool instead of the event loop."""
    fn.__pyme_blocking__ = True
    return fn


def param(request: Request, name: str, convert: Callable[[str], Any] = str, default: Any = ...) -> Any:
    """A query parameter converted with ``convert``; 400 when missing (and no default) or malformed."""
    if name not in request.query:
        if default is ...:
            raise HTTPError(400, f"missing query parameter {name!r}")
        return default
    try:
        return convert(request.query[name])
    except (TypeError, ValueError):
        raise HTTPError(400, f"query parameter {name!r} is malformed: {request.query[name]!r}") from None


def json_body(body: bytes, default: Any = ...) -> Any:
    """The request body parsed as JSON; 400 when empty (and no default) or invalid."""
    if not body.strip():
        if default is ...:
            raise HTTPError(400, "this request needs a JSON body")
        return default
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPError(400, f"the body is not valid JSON: {e}") from None


def encode_json(request: Request, obj: Any, status: int = 200) -> Response:
    data = json.dumps(obj, separators=(",", ":")).encode()
    headers = []
    if len(data) >= GZIP_MIN and "gzip" in request.header("accept-encoding", ""):
        data = gzip.compress(data, 1)
        headers.append(("Content-Encoding", "gzip"))
    return Response(status, data, "application/json", headers=headers)


class JSONApp:
    """Routes requests by path to handlers; see the module docstring."""

    def __init__(self, routes: dict[str, Handler], executor: Executor | None = None,
                 max_body: int = MAX_BODY) -> None:
        self.routes = {"/" + path.strip("/"): fn for path, fn in routes.items()}
        self.executor = executor
        self.max_body = max_body

    def begin(self, request: Request):
        gz = request.header("content-encoding", "").strip().lower() == "gzip"
        return MemorySink(self.max_body, gzipped=gz)

    async def handle(self, request: Request, sink: MemorySink) -> Response:
        if request.method not in ("GET", "POST", "PUT", "HEAD"):
            raise HTTPError(405, f"method {request.method} is not allowed")
        handler = self.routes.get("/" + request.path.strip("/"))
        if handler is None:
            raise HTTPError(404, f"no such endpoint: {request.path}")
        if sink.too_large:
            raise HTTPError(413, f"request bodies are limited to {self.max_body} bytes")
        if sink.bad_gzip:
            raise HTTPError(400, "the body is not valid gzip (Content-Encoding: gzip)")
        body = sink.body()
        if getattr(handler, "__pyme_blocking__", False):
            result = await asyncio.get_running_loop().run_in_executor(self.executor, handler, request, body)
        else:
            result = handler(request, body)
            if inspect.isawaitable(result):
                result = await result
        if isinstance(result, Response):
            return result
        return encode_json(request, result)
