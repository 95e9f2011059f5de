"""Exceptions shared by every room of the package."""
from __future__ import annotations

import os
import sys


class UsageError(Exception):
    """Something the user can fix (a bad option, a port in use); the CLI prints it as one line."""


ALLOW_ROOT_ENV = "PYME_DESK_ALLOW_ROOT"


def refuse_root(service: str) -> None:
    """Raise UsageError when running as root/Administrator-equivalent uid 0.

    Servers that write into a data root must not run as root: a path bug would then reach the
    whole machine.  ``PYME_DESK_ALLOW_ROOT=1`` overrides this for throw-away containers and CI.
    """
    if sys.platform == "win32" or not hasattr(os, "geteuid"):
        return
    if os.geteuid() == 0 and os.environ.get(ALLOW_ROOT_ENV) != "1":
        raise UsageError(f"refusing to run the {service} as root; run it as an unprivileged user "
                         f"(or set {ALLOW_ROOT_ENV}=1 in a throw-away container)")
