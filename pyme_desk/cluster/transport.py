"""HTTP to data servers: pooled keep-alive connections, time-outs, auth, and error translation.

requests.Session is not documented as thread-safe, so each thread gets its own Session
(``threading.local``); inside it urllib3 keeps one keep-alive connection pool per server.
Every request has an explicit (connect, read) time-out.  Mutating requests carry
``Authorization: Bearer <token>`` when a cluster token is set.  requests' exceptions become
ServerUnreachableError (nothing reached the server, or the connection broke) or
ServerTimeoutError (the server went quiet), each naming the URL.
"""
from __future__ import annotations

import json
import re
import threading

import requests

from pyme_desk.cluster.errors import ServerTimeoutError, ServerUnreachableError


def response_reason(response: requests.Response) -> str:
    """The server's own explanation: ``{"error": ...}`` if present, else a short text excerpt."""
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except (ValueError, json.JSONDecodeError):
        pass
    text = re.sub(r"<[^>]+>", " ", response.text or "")
    text = " ".join(text.split())[:200]
    return text or response.reason or f"HTTP {response.status_code}"


class Transport:
    """GET and PUT against data servers with per-thread Sessions."""

    def __init__(self, *, token: str | None, timeout: float, connect_timeout: float):
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._local = threading.local()

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # data servers are reached directly, never via a proxy
        return session

    def get(self, url: str, *, timeout: float | None = None, params: dict | None = None) -> requests.Response:
        return self._send("GET", url, timeout=timeout, params=params)

    def put(self, url: str, data: bytes, *, timeout: float | None = None,
            headers: dict[str, str] | None = None) -> requests.Response:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return self._send("PUT", url, timeout=timeout, data=data, headers=headers)

    def _send(self, method: str, url: str, *, timeout: float | None, **kwargs) -> requests.Response:
        read_timeout = self.timeout if timeout is None else timeout
        connect_timeout = min(self.connect_timeout, read_timeout)
        try:
            return self.session().request(method, url, timeout=(connect_timeout, read_timeout),
                                          allow_redirects=False, **kwargs)
        except requests.ConnectionError as e:  # includes ConnectTimeout
            raise ServerUnreachableError(f"{method} {url}: cannot reach data server: {_short(e)}") from None
        except requests.Timeout:
            raise ServerTimeoutError(f"{method} {url}: no answer within {read_timeout} s") from None


def _short(error: Exception) -> str:
    """The innermost reason of a requests/urllib3 error chain, without the pool boilerplate."""
    text = str(error)
    match = re.search(r"\[Errno [^\]]+\] [^'\")]+|timed out", text)
    return match.group(0) if match else text[:200]
