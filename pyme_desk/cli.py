"""``pyme-desk <subcommand>``: parses arguments, then hands over to a room of the package.

Every subcommand lives in the module that owns the work and exposes two functions,
``add_arguments(parser)`` and ``run(args, config) -> int``; this module only lists them.
Errors a user can fix (bad arguments, a broken config file, a port in use) end in exit code 2
and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

from pyme_desk import __version__
from pyme_desk.config import ConfigError, load_config
from pyme_desk.errors import UsageError
from pyme_desk.frozen import is_frozen, module_form, run_module

#: subcommand -> (module, one-line help). The module provides add_arguments() and run(); it is
#: imported only when its subcommand is used, so one room's import cost or error stays its own.
COMMANDS: dict[str, tuple[str, str]] = {
    "dataserver": ("pyme_desk.storage.command", "serve a data root over PYME's data server protocol"),
    "discover": ("pyme_desk.discovery.command", "list the data servers and cluster services found on the network"),
    "spool": ("pyme_desk.spool.command", "spool TIFF stacks or a watched folder into the cluster as a series"),
    "simulate": ("pyme_desk.spool.simulate_command", "simulate an SMLM camera and spool its frames into the cluster"),
    "ruleserver": ("pyme_desk.scheduler.command", "run the rule server that hands out analysis tasks"),
    "nodeserver": ("pyme_desk.node.command", "run a node server and its worker processes"),
    "analyse": ("pyme_desk.analysis.command", "localize the molecules of a spooled series on the cluster"),
    "webdav": ("pyme_desk.webdav.command", "serve the cluster as a WebDAV share (map it as a network drive)"),
    "webdav-user": ("pyme_desk.webdav.user_command", "add a user to the WebDAV users file"),
    "replicate": ("pyme_desk.replication.command", "keep every complete cluster file on N data servers"),
    "cluster": ("pyme_desk.supervisor.cluster_command", "run the cluster of one (data, rule and node server) on this machine"),
    "node": ("pyme_desk.supervisor.agent_command", "run this machine's services with a control API for the desk (node agent)"),
    "install-service": ("pyme_desk.supervisor.install", "start the node agent at boot as this user (systemd / scheduled task)"),
    "uninstall-service": ("pyme_desk.supervisor.uninstall_command", "remove the boot-time node agent"),
    "doctor": ("pyme_desk.supervisor.doctor", "check this machine's cluster setup and say how to fix each problem"),
    "config": ("pyme_desk.config_command", "show the merged configuration and where it came from"),
    "install-shortcut": ("pyme_desk.gui.shortcut", "add PYME Desk to the start menu and the desktop"),
}
#: What ``pyme-desk`` with no subcommand runs: the desktop app, or with --no-gui the headless
#: cluster of one (the supervisor's command).
GUI_MODULE, HEADLESS_MODULE = "pyme_desk.gui.app", "pyme_desk.supervisor.cluster_command"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only ``command``'s module is imported to fill in its options."""
    parser = _Parser(prog="pyme-desk", description="pyme-desk: control center for PYME analysis clusters.")
    parser.add_argument("--version", action="version", version=f"pyme-desk {__version__}")
    parser.add_argument("--config", metavar="FILE", action="append",
                        help="read this config file instead of the standard ones (repeatable)")
    parser.add_argument("--no-gui", action="store_true",
                        help="with no subcommand: run the local cluster of one without the window")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] == "--config":
            i += 2
            continue
        if args[i].startswith("--config="):
            i += 1
            continue
        if not args[i].startswith("-"):
            return args[i] if args[i] in COMMANDS else None
        i += 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_frozen():  # the stand-alone build is also its own "python -m" (see pyme_desk/frozen.py)
        try:
            form = module_form(argv)
        except UsageError as e:
            print(f"pyme-desk: error: {e}", file=sys.stderr)
            return 2
        if form is not None:
            return run_module(*form)
    parser = build_parser(_requested_command(argv))
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else load_config()
        if args.command is None:
            return _run_default(args, config)
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args, config) or 0)
    except (UsageError, ConfigError) as e:
        print(f"{' '.join(filter(None, ('pyme-desk', args.command)))}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run_default(args: argparse.Namespace, config) -> int:
    """``pyme-desk`` alone: the desktop app, or the headless cluster of one with --no-gui."""
    if args.no_gui:
        if importlib.util.find_spec(HEADLESS_MODULE.rpartition(".")[0]) is None:
            raise UsageError("the headless cluster of one (--no-gui) is not available in this build")
        module = importlib.import_module(HEADLESS_MODULE)
        return int(module.run(args, config) or 0)
    try:
        module = importlib.import_module(GUI_MODULE)
    except ImportError as e:
        raise UsageError(f"the desktop app needs PyQt5 and pyqtgraph (pip install 'pyme-desk[gui]'): {e}") from None
    return int(module.run_gui(args, config) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
