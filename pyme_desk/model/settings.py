"""The settings dialog's values: read from a config, checked, and written to the user's config file.

Only the keys the dialog edits are written; every other key of the file is kept.  The file is
written to a temporary name and renamed into place, so it is never left half-written.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pyme_desk.config import Config, read_config_file, user_config_dir

_FILTER = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Settings:
    data_root: str
    server_filter: str
    workers: int | None  # None: one per CPU
    token: str
    dataserver_port: int
    ruleserver_port: int
    nodeserver_port: int

    @classmethod
    def from_config(cls, config: Config) -> "Settings":
        return cls(data_root=str(config.data_root), server_filter=config.server_filter,
                   workers=config.get("nodeserver-num_workers"),
                   token=str(config.get("desk-cluster-token") or ""),
                   dataserver_port=int(config.get("dataserver-port")),
                   ruleserver_port=int(config.get("ruleserver-port")),
                   nodeserver_port=int(config.get("nodeserver-port")))

    def as_config_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "dataserver-root": self.data_root, "dataserver-filter": self.server_filter,
            "nodeserver-num_workers": self.workers, "dataserver-port": self.dataserver_port,
            "ruleserver-port": self.ruleserver_port, "nodeserver-port": self.nodeserver_port}
        values["desk-cluster-token"] = self.token or None
        return values


def validate(settings: Settings) -> dict[str, str]:
    """Problems by field name; empty when the settings can be saved."""
    problems: dict[str, str] = {}
    root = Path(os.path.expanduser(settings.data_root)) if settings.data_root.strip() else None
    if root is None:
        problems["data_root"] = "choose a folder for the data"
    elif root.exists() and not root.is_dir():
        problems["data_root"] = f"{root} is a file, not a folder"
    elif root.exists() and not os.access(root, os.W_OK):
        problems["data_root"] = f"{root} is not writable by you"
    elif not root.exists() and not _creatable(root):
        problems["data_root"] = f"{root} does not exist and cannot be created here"
    if not _FILTER.match(settings.server_filter):
        problems["server_filter"] = "use letters, digits, '.', '_' or '-' only"
    if settings.workers is not None and not 1 <= settings.workers <= 1024:
        problems["workers"] = "between 1 and 1024 (or leave empty for one per CPU)"
    if settings.token and (len(settings.token) < 12 or any(c.isspace() for c in settings.token)):
        problems["token"] = "at least 12 characters, no spaces"
    ports = {"dataserver_port": settings.dataserver_port, "ruleserver_port": settings.ruleserver_port,
             "nodeserver_port": settings.nodeserver_port}
    for name, port in ports.items():
        if not 1 <= port <= 65535:
            problems[name] = "a port is between 1 and 65535"
    if len(set(ports.values())) < len(ports):
        problems.setdefault("nodeserver_port", "the three ports must differ")
    return problems


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings into the user config file (other keys kept); ValueError if invalid."""
    problems = validate(settings)
    if problems:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    path = path or user_config_dir() / "config.yaml"
    values = read_config_file(path)
    for key, value in settings.as_config_values().items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(values, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def _creatable(path: Path) -> bool:
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            return False
        parent = parent.parent
    return parent.is_dir() and os.access(parent, os.W_OK)
