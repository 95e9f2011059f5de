"""The stand-alone (PyInstaller) build: its executable stands in for ``python -m``.

pyme-desk starts its children as ``sys.executable -m <module> ...`` (the supervisor's services
as ``-m pyme_desk <subcommand>``, the node server's workers as ``-m pyme_desk.node.worker``).
In a frozen build ``sys.executable`` is ``pyme-desk.exe`` and there is no interpreter to take
``-m``, so the executable itself honours that form: one command line works from a source
checkout, an installed package and the stand-alone build alike.
"""
from __future__ import annotations

import runpy
import sys
from typing import Sequence

from pyme_desk.errors import UsageError


def is_frozen() -> bool:
    """True in a PyInstaller (or similar) build, where ``sys.executable`` is our own program."""
    return bool(getattr(sys, "frozen", False))


def module_form(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """``(module, arguments)`` when ``argv`` is ``-m <module> [arguments...]``, else None."""
    if len(argv) >= 1 and argv[0] == "-m":
        if len(argv) < 2:
            raise UsageError("-m needs a module name (-m pyme_desk <subcommand>)")
        module = argv[1]
        if module != "pyme_desk" and not module.startswith("pyme_desk."):
            raise UsageError(f"this build runs only pyme_desk's own modules, not {module!r}")
        return module, list(argv[2:])
    return None


def run_module(module: str, arguments: Sequence[str]) -> int:
    """Run ``module`` as ``python -m module arguments...`` would (its ``__main__`` block)."""
    sys.argv = [sys.argv[0] if sys.argv else module, *arguments]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        print(code, file=sys.stderr)
        return 1
    return 0
