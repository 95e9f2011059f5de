"""Where services write their logs: a per-user directory, never inside the served data root."""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from pyme_desk.errors import UsageError


def default_log_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "pyme-desk" / "logs"
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "pyme-desk" / "logs"


def configure_service_logging(service: str, log_dir: Path | None = None, *,
                              data_root: Path | None = None, verbose: bool = False) -> Path:
    """Log to stderr and to ``<log_dir>/<service>.log`` (rotating, 5 x 5 MB); returns the file."""
    log_dir = Path(log_dir) if log_dir else default_log_dir()
    if data_root is not None:
        real_root = Path(os.path.realpath(data_root))
        real_logs = Path(os.path.realpath(log_dir))
        if real_logs == real_root or real_root in real_logs.parents:
            raise UsageError(f"the log directory {log_dir} lies inside the data root; "
                             "choose one outside it (desk-log-dir)")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the log directory {log_dir}: {e.strerror or e}") from None
    log_file = log_dir / f"{service}.log"
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=5_000_000, backupCount=5,
                                                   encoding="utf-8")
    handler.setFormatter(fmt)
    console = logging.StreamHandler()
    console.setFormatter(fmt)
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler, console]
    root_logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return log_file
