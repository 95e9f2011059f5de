"""Turn exceptions into one-line messages a user can read (never a traceback)."""
from __future__ import annotations

import requests

from pyme_desk.cluster.errors import ClusterError


def describe(exc: BaseException) -> str:
    """A one-line description of ``exc`` for the status bar or a message box."""
    if isinstance(exc, ClusterError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect: the server is not running or not reachable"
    if isinstance(exc, requests.Timeout):
        return "the server did not answer in time"
    if isinstance(exc, FileNotFoundError):
        return f"not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
