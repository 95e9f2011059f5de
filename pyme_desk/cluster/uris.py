"""``pyme-cluster://`` URIs, plain ``http://`` data-server URLs and cluster path rules.

A cluster URI is ``pyme-cluster://<filter>/<path>`` (protocol.md §3.1): the scheme is matched
case-sensitively as ``pyme-cluster`` or ``PYME-CLUSTER`` (spoolers write the upper-case form),
the text up to the next ``/`` is the cluster name ("server filter", may be empty) and the rest
is a path relative to the cluster root.  Nothing is percent-decoded.

Cluster paths are relative, ``/``-separated strings.  Leading and doubled slashes are dropped
(PYME callers often add a leading ``/``); ``..`` is refused rather than silently removed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyme_desk.cluster.errors import InvalidNameError

CLUSTER_SCHEMES = ("pyme-cluster", "PYME-CLUSTER")

#: Characters PYME clients allow in names they PUT (protocol.md §3.1).
_PUT_NAME = re.compile(r"^[\w/.\-]+$")


@dataclass(frozen=True)
class ClusterURI:
    """A file or directory on the cluster named ``server_filter``."""

    server_filter: str
    path: str
    scheme: str = "pyme-cluster"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.server_filter}/{self.path}"


@dataclass(frozen=True)
class HttpURI:
    """A file on one concrete data server: ``base`` is ``http://host:port/``."""

    base: str
    path: str

    def __str__(self) -> str:
        return self.base + self.path


def is_cluster_uri(text: str) -> bool:
    return any(text.startswith(s + "://") for s in CLUSTER_SCHEMES)


def is_http_uri(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def parse_cluster_uri(uri: str) -> ClusterURI:
    """Split ``pyme-cluster://<filter>/<path>``; raise InvalidNameError for any other text."""
    for scheme in CLUSTER_SCHEMES:
        prefix = scheme + "://"
        if uri.startswith(prefix):
            server_filter, _, path = uri[len(prefix):].partition("/")
            return ClusterURI(server_filter, clean_path(path), scheme)
    raise InvalidNameError(f"not a cluster URI: {uri!r} (expected pyme-cluster://<filter>/<path>)")


def format_cluster_uri(server_filter: str, path: str, *, upper: bool = False) -> str:
    """``pyme-cluster://<filter>/<path>``, or the ``PYME-CLUSTER`` form spoolers write."""
    return str(ClusterURI(server_filter, clean_path(path), CLUSTER_SCHEMES[1 if upper else 0]))


def parse_http_uri(url: str) -> HttpURI:
    """Split ``http://host:port/<path>`` into the server base URL and the cluster path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidNameError(f"not an http URL: {url!r}")
    return HttpURI(f"{parts.scheme}://{parts.netloc}/", clean_path(parts.path))


def parse_uri(text: str) -> ClusterURI | HttpURI | str:
    """A ClusterURI, an HttpURI, or (for anything else) the cleaned cluster path itself."""
    if is_cluster_uri(text):
        return parse_cluster_uri(text)
    if is_http_uri(text):
        return parse_http_uri(text)
    return clean_path(text)


def clean_path(path: str) -> str:
    """Drop leading, doubled and ``.`` segments; keep one trailing ``/``; refuse ``..``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidNameError(f"cluster path {path!r} must not contain '..'")
    cleaned = "/".join(parts)
    return cleaned + "/" if path.endswith("/") and cleaned else cleaned


def validate_name(path: str) -> str:
    """Return the cleaned path if it may be PUT, else raise InvalidNameError saying why."""
    cleaned = clean_path(path)
    if not cleaned:
        raise InvalidNameError("cannot write a file with an empty cluster path")
    if not _PUT_NAME.match(cleaned):
        bad = sorted({c for c in cleaned if not _PUT_NAME.match(c)})
        raise InvalidNameError(
            f"invalid cluster file name {path!r}: character(s) {''.join(bad)!r} not allowed; "
            f"use letters, digits, '_', '-', '.' and '/' (fix_name() replaces spaces with '_')")
    return cleaned


def fix_name(name: str) -> str:
    """Replace spaces with underscores, the one repair PYME makes to user-typed names."""
    return name.replace(" ", "_")


def split_path(path: str) -> tuple[str, str]:
    """``("dir/sub", "name")`` for ``dir/sub/name``; a trailing ``/`` is ignored."""
    parent, _, name = clean_path(path).rstrip("/").rpartition("/")
    return parent, name
