"""PYME-compatible configuration.

PYME reads ``config.yaml`` files from a system-wide directory and from the user's
``~/.PYME`` directory, later files overriding earlier ones.  We read the same files with the
same key names (``dataserver-root``, ``dataserver-filter``, ...), so one config serves both a
PYME install and pyme-desk, and add our own keys with a ``desk-`` prefix.

Search order (later wins):

1. the site directory: ``/etc/PYME/config.yaml`` (POSIX) or ``%PROGRAMDATA%\\PYME\\config.yaml``
   (Windows);
2. the user directory: ``~/.PYME/config.yaml`` (``%USERPROFILE%\\.PYME`` on Windows);
3. ``$PYME_DESK_CONFIG`` if set (one file, read last).

The environment variable ``PYMEDATADIR`` supplies the data root when no file sets
``dataserver-root`` (as in PYME).  A broken YAML file raises :class:`ConfigError` naming the
file and the line.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from pyme_desk.names import computer_name

ENV_CONFIG_FILE = "PYME_DESK_CONFIG"
ENV_DATA_DIR = "PYMEDATADIR"

#: Defaults for every key we read, PYME's names first (code defaults, see protocol.md).
DEFAULTS: dict[str, Any] = {
    "dataserver-root": None,  # resolved in Config.data_root
    "dataserver-filter": None,  # None -> computer name
    "dataserver-port": 15348,
    "cluster-listing-no-countdir": False,
    "clusterIO-hybridns": True,
    "httpspooler-chunksize": 50,
    "ruleserver-port": 15346,
    "ruleserver-retries": 1,
    "nodeserver-port": 15347,
    "nodeserver-num_workers": None,  # None -> CPU count
    "nodeserver-chunksize": 50,
    "nodeserver-worker-get-timeout": 60,
    "rulenodeserver-nonlocal": True,
    "h5r-flush_interval": 1.0,
    # pyme-desk's own keys
    "desk-cluster-token": None,  # shared secret for mutating endpoints off loopback
    "desk-token-file": None,  # file holding the token (first line)
    "desk-log-dir": None,  # None -> per-user log dir (never inside the data root)
    "desk-bind": "127.0.0.1",
    "desk-static-dataservers": [],  # list of URLs always included in discovery
    "desk-ruleserver-task-timeout": 600,  # s a task may run before it is handed out again
    "desk-ruleserver-journal": None,  # None -> per-user state dir
    "desk-webdav-users": None,  # None -> ~/.PYME/webdav-users
}


class ConfigError(Exception):
    """A config file cannot be used; the message names the file and, where known, the line."""


def site_config_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "PYME"
    return Path("/etc/PYME")


def user_config_dir() -> Path:
    return Path.home() / ".PYME"


def default_config_files(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    files = [site_config_dir() / "config.yaml", user_config_dir() / "config.yaml"]
    if env.get(ENV_CONFIG_FILE):
        files.append(Path(env[ENV_CONFIG_FILE]))
    return files


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse one YAML config file; a missing file is an empty config."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values, "
                          f"not {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


@dataclass
class Config:
    """Merged configuration: defaults < site file < user file < $PYME_DESK_CONFIG."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.values:
            return self.values[key]
        if default is not None:
            return default
        return DEFAULTS.get(key)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    @property
    def data_root(self) -> Path:
        root = self.values.get("dataserver-root")
        if root:
            return Path(os.path.expanduser(str(root)))
        if self.env.get(ENV_DATA_DIR):
            return Path(self.env[ENV_DATA_DIR])
        return Path.home() / "PYMEData"

    @property
    def server_filter(self) -> str:
        f = self.values.get("dataserver-filter")
        return computer_name(self.env) if f is None else str(f)

    @property
    def cluster_token(self) -> str | None:
        """The shared cluster token: ``desk-cluster-token``, else the first line of ``desk-token-file``."""
        token = self.values.get("desk-cluster-token")
        if token:
            return str(token)
        token_file = self.values.get("desk-token-file")
        if token_file:
            return read_token_file(Path(os.path.expanduser(str(token_file))))
        return None


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read token file: {e.strerror or e}") from None
    if not token or not token[0].strip():
        raise ConfigError(f"{path}: token file is empty")
    return token[0].strip()


def load_config(files: Iterable[Path] | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    files = default_config_files(env) if files is None else [Path(f) for f in files]
    values: dict[str, Any] = {}
    sources = []
    for f in files:
        data = read_config_file(f)
        if data:
            sources.append(f)
        values.update(data)
    return Config(values=values, sources=sources, env=env)
