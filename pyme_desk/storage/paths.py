"""Map URL paths to files under the data root, so that no request can reach outside it.

Rules, applied to the percent-decoded path (the HTTP core decodes it):

* components ``..`` are refused (400), not silently dropped: a client that sends them is
  either broken or probing, and both deserve to hear it;
* backslashes, drive letters (``C:``), NUL and other control characters are refused;
* empty and ``.`` components collapse, as in any URL path;
* names starting with ``.pyme-desk`` are ours (temp files) and are not served;
* after joining, the real path (symlinks resolved) must still lie under the real root — a
  symlink inside the root that points out of it is refused (403).
"""
from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pyme_desk.web.errors import HTTPError

#: Our private directory inside the root for in-progress uploads (same file system, so the
#: final rename is atomic).  Hidden from listings and unreachable over HTTP.
TEMP_DIR_NAME = ".pyme-desk-tmp"
PRIVATE_PREFIX = ".pyme-desk"

#: how long (s) a directory's "inside the root" verdict is trusted
DIR_CHECK_TTL = 2.0

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DataPath:
    """A validated location inside the root."""

    rel: str  # '/'-separated, no leading slash, '' for the root itself
    fs: Path  # absolute file-system path
    trailing_slash: bool


def split_components(url_path: str) -> list[str]:
    """Validate and split a decoded URL path into safe components."""
    if _CONTROL.search(url_path):
        raise HTTPError(400, "the path contains control characters")
    if "\\" in url_path:
        raise HTTPError(400, "backslashes are not allowed in paths")
    parts = []
    for comp in url_path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            raise HTTPError(400, "'..' is not allowed in paths")
        if _DRIVE.match(comp):
            raise HTTPError(400, "drive letters are not allowed in paths")
        if comp.startswith(PRIVATE_PREFIX):
            raise HTTPError(403, f"names starting with {PRIVATE_PREFIX!r} are reserved")
        parts.append(comp)
    return parts


class Root:
    """The served data root."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root).resolve()
        self.real = os.path.realpath(self.path)
        self.temp_dir = self.path / TEMP_DIR_NAME
        self._real_prefix = self.real.rstrip(os.sep) + os.sep
        self._dirs_inside: dict[str, float] = {}  # directory -> verified-inside until (monotonic)

    def resolve(self, url_path: str) -> DataPath:
        parts = split_components(url_path)
        rel = "/".join(parts)
        fs = self.path.joinpath(*parts) if parts else self.path
        self.check_inside(fs)
        return DataPath(rel, fs, url_path.endswith("/") and bool(parts) or url_path == "/")

    def check_inside(self, fs: Path) -> None:
        """403 when the deepest existing ancestor of ``fs`` resolves outside the root.

        Symlinks are followed: a link inside the root that points out of it is refused.  The
        verdict for a directory is remembered for ``DIR_CHECK_TTL`` seconds, so a request
        costs one ``lstat`` instead of one per path component.
        """
        probe = fs
        while True:
            try:
                st = os.lstat(probe)
                break
            except (FileNotFoundError, NotADirectoryError):
                if probe == self.path:
                    return
                probe = probe.parent
        if stat.S_ISLNK(st.st_mode):
            self._check_real(os.path.realpath(probe))
        elif probe != self.path:
            self._check_dir(probe if stat.S_ISDIR(st.st_mode) else probe.parent)

    def _check_dir(self, directory: Path) -> None:
        key = os.fspath(directory)
        now = time.monotonic()
        if self._dirs_inside.get(key, 0.0) > now:
            return
        self._check_real(os.path.realpath(key))
        if len(self._dirs_inside) > 10_000:
            self._dirs_inside.clear()
        self._dirs_inside[key] = now + DIR_CHECK_TTL

    def _check_real(self, real: str) -> None:
        if real != self.real and not real.startswith(self._real_prefix):
            raise HTTPError(403, "the path leads outside the data root")

    def relative(self, fs: Path) -> str:
        return Path(fs).relative_to(self.path).as_posix()
