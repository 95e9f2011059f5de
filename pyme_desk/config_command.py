"""``pyme-desk config``: print the merged configuration and the files it came from."""
from __future__ import annotations

import argparse

import yaml

from pyme_desk.config import DEFAULTS, Config, default_config_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--files", action="store_true", help="only list the files that are searched")


def run(args: argparse.Namespace, config: Config) -> int:
    if args.files:
        for f in default_config_files(config.env):
            print(f"{f}  ({'read' if f in config.sources else 'absent or empty'})")
        return 0
    merged = {k: config.get(k) for k in DEFAULTS}
    merged.update(config.values)
    merged["dataserver-root"] = str(config.data_root)
    merged["dataserver-filter"] = config.server_filter
    if merged.get("desk-cluster-token"):
        merged["desk-cluster-token"] = "***"
    print(f"# read from: {', '.join(map(str, config.sources)) or 'no config file (defaults)'}")
    print(yaml.safe_dump(merged, sort_keys=True), end="")
    return 0
