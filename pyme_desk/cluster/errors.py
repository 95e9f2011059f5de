"""Exceptions the cluster client raises, each with a message a user can act on.

Every one is a :class:`ClusterError`, which is an :class:`OSError` so that scripts written for
PYME's ``clusterIO`` (which raised ``IOError``) keep catching them.  Where a builtin exception
means the same thing (a missing file, an existing file, a bad name) the class also derives from it.
"""
from __future__ import annotations


class ClusterError(OSError):
    """Something went wrong talking to the cluster's data servers."""


class NoServersError(ClusterError):
    """Discovery found no data server for the cluster name (server filter)."""

    def __init__(self, server_filter: str):
        super().__init__(f"no data servers found for filter {server_filter!r}: is the cluster running?")
        self.server_filter = server_filter


class ClusterFileNotFoundError(ClusterError, FileNotFoundError):
    """No data server holds the file."""


class ClusterFileExistsError(ClusterError, FileExistsError):
    """A write-once PUT named a file that already exists on the cluster."""


class InvalidNameError(ClusterError, ValueError):
    """A cluster path or URI is malformed, or uses characters PUT does not allow."""


class InsufficientSpaceError(ClusterError):
    """No data server has enough free disk for the data to be written."""


class ServerError(ClusterError):
    """A data server answered with an unexpected HTTP status; ``reason`` is its own explanation."""

    def __init__(self, url: str, status: int, reason: str):
        super().__init__(f"{url}: HTTP {status}: {reason}")
        self.url = url
        self.status = status
        self.reason = reason


class ServerUnreachableError(ClusterError, ConnectionError):
    """No data server could be reached (connection refused, reset or timed out)."""


class ServerTimeoutError(ClusterError, TimeoutError):
    """A data server accepted the connection but did not answer in time."""


class PutFilesError(ClusterError):
    """Some files of a bulk upload were refused; ``failures`` maps each path to the server's reason."""

    def __init__(self, server_url: str, failures: dict[str, str]):
        shown = "; ".join(f"{p}: {r}" for p, r in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{server_url}: {len(failures)} file(s) not stored: {shown}{more}")
        self.server_url = server_url
        self.failures = failures
