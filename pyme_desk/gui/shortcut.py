"""``pyme-desk install-shortcut``: a "PYME Desk" entry in the start menu and on the desktop.

Made with pyshortcuts: a Windows ``.lnk`` that starts ``pythonw -m pyme_desk`` (no console
window), or a Linux ``.desktop`` file.  pyshortcuts turns the name's space into an underscore
and leaves the ``Exec=`` path unquoted, so the Linux file is then given the display name
"PYME Desk" and a quoted interpreter path.  The icon is ``resources/pyme-desk.ico`` (Windows)
or ``.png``, written from the drawn icon when missing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pyme_desk.errors import UsageError

NAME = "PYME Desk"
DESCRIPTION = "Control center for PYME analysis clusters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-desktop", action="store_true", help="only add the start-menu entry")
    parser.add_argument("--no-startmenu", action="store_true", help="only add the desktop entry")


def run(args: argparse.Namespace, config) -> int:
    paths = install_shortcut(desktop=not args.no_desktop, startmenu=not args.no_startmenu)
    for path in paths:
        print(f"created {path}")
    return 0


def gui_python() -> Path:
    """The interpreter a shortcut should start: ``pythonw.exe`` on Windows (no console)."""
    exe = Path(sys.executable)
    if sys.platform == "win32":
        windowed = exe.with_name("pythonw.exe")
        if windowed.exists():
            return windowed
    return exe


def icon_file() -> Path:
    from pyme_desk.gui.qt_resources import RESOURCES, write_icons

    icon = RESOURCES / ("pyme-desk.ico" if sys.platform == "win32" else "pyme-desk.png")
    if not icon.exists():
        from PyQt5.QtGui import QGuiApplication

        app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - needed to paint
        write_icons(RESOURCES)
    return icon


def install_shortcut(desktop: bool = True, startmenu: bool = True) -> list[Path]:
    """Create the shortcuts; returns the files written (UsageError when none could be)."""
    if not (desktop or startmenu):
        raise UsageError("nothing to do: both --no-desktop and --no-startmenu were given")
    from pyshortcuts import make_shortcut

    python = gui_python()
    try:
        scut = make_shortcut("-m pyme_desk", name=NAME, description=DESCRIPTION, icon=str(icon_file()),
                             terminal=False, desktop=desktop, startmenu=startmenu,
                             executable=str(python))
    except OSError as e:
        raise UsageError(f"cannot create the shortcut: {e.strerror or e}") from None
    folders = [d for d, wanted in ((scut.desktop_dir, desktop), (scut.startmenu_dir, startmenu)) if wanted]
    paths = [Path(folder, scut.target) for folder in folders]
    if sys.platform.startswith("linux"):
        for path in paths:
            _tidy_desktop_file(path, python)
    return paths


def _tidy_desktop_file(path: Path, python: Path) -> None:
    """Give the entry its real name and quote the interpreter path (it may hold spaces)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("Name="):
            line = f"Name={NAME}"
        elif line.startswith("Exec="):
            line = f'Exec="{python.as_posix()}" -m pyme_desk'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
