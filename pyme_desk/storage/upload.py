"""Atomic uploads: a body streams into a private temp file and appears under its name only
when complete, with no overwrite, so a dropped connection or a crash leaves nothing behind and
of two concurrent PUTs of one name exactly one wins."""
from __future__ import annotations

import errno
import os
import uuid
import zlib
from pathlib import Path

from pyme_desk.web.errors import HTTPError


class UploadSink:
    """Receives one PUT body into ``<temp_dir>/<uuid>.part``, gunzipping if asked."""

    def __init__(self, temp_dir: Path, gzipped: bool = False) -> None:
        self.temp = Path(temp_dir) / f"{uuid.uuid4().hex}.part"
        self._file = open(self.temp, "xb", buffering=0)
        self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self.error: HTTPError | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        if self.error is not None:
            return  # keep draining the body so the connection stays usable
        try:
            data = self._gunzip.decompress(chunk) if self._gunzip is not None else chunk
            self._file.write(data)
            self.size += len(data)
        except zlib.error:
            self._fail(HTTPError(400, "the body is not valid gzip (Content-Encoding: gzip)"))
        except OSError as e:
            status = 507 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 500
            self._fail(HTTPError(status, f"cannot store the upload: {e.strerror or e}"))

    def finish(self) -> None:
        if self.error is None and self._gunzip is not None:
            try:
                self._file.write(self._gunzip.flush())
            except (zlib.error, OSError) as e:
                self._fail(HTTPError(400, f"the gzip body cannot be decoded: {e}"))
            else:
                if not self._gunzip.eof:
                    self._fail(HTTPError(400, "the gzip body is truncated"))
        self._file.close()

    def abort(self) -> None:
        """Throw the upload away (connection lost, request refused)."""
        self._file.close()
        self.temp.unlink(missing_ok=True)

    def _fail(self, error: HTTPError) -> None:
        self.error = error
        self.abort()

    def commit(self, final: Path) -> bool:
        """Move the finished upload to ``final``; False (and nothing changed) if it exists."""
        if self.error is not None:
            raise self.error
        if os.name != "nt":
            os.chmod(self.temp, 0o440)  # stored files are read-only, as in PYME
        return publish(self.temp, final)


def publish(temp: Path, final: Path) -> bool:
    """Give ``temp`` the name ``final`` unless that exists; ``temp`` is gone afterwards."""
    try:
        if os.name == "nt":
            os.rename(temp, final)  # refuses an existing target on Windows
        else:
            try:
                os.link(temp, final)  # refuses an existing target, atomically
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # no hard links on this file system: best effort no-overwrite rename
                if os.path.lexists(final):
                    return False
                os.rename(temp, final)
        return True
    except FileExistsError:
        return False
    finally:
        Path(temp).unlink(missing_ok=True)
