"""``pyme-desk uninstall-service``: remove what ``install-service`` set up."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.supervisor.install import SERVICE_NAME, default_unit_dir, run_commands, uninstall_commands
from pyme_desk.supervisor.lock import default_state_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit-dir", type=Path, help="where install-service wrote the unit or task XML")
    parser.add_argument("--no-disable", action="store_true", help="remove the file only")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")


def run(args: argparse.Namespace, config: Config) -> int:
    if sys.platform == "win32":
        target = (args.unit_dir or default_state_dir()) / f"{SERVICE_NAME}.xml"
    else:
        target = (args.unit_dir or default_unit_dir()) / f"{SERVICE_NAME}.service"
    commands = [] if args.no_disable else uninstall_commands(sys.platform)
    if args.dry_run:
        for c in commands:
            print("would run: " + " ".join(shlex.quote(a) for a in c))
        print(f"would remove {target}")
        return 0
    if not target.exists() and args.no_disable:
        print(f"nothing to remove: {target} does not exist")
        return 0
    run_commands(commands[:1])  # disable first, while the unit file is still there
    target.unlink(missing_ok=True)
    print(f"removed {target}")
    run_commands(commands[1:])
    return 0
