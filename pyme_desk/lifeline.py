"""Stop a server when the process that started it goes away, on every platform.

A supervisor starts each service with a pipe on its stdin and never writes to it.  When the
supervisor exits, however it exits (even ``kill -9``), the operating system closes its end of
the pipe and the service reads end-of-file.  That is the signal to shut down gracefully.
Closing the pipe on purpose is also how the supervisor asks a service to stop on Windows, where
there is no SIGTERM.

The watch is opt-in through the environment variable :data:`LIFELINE_ENV` (a server started
from a terminal must not stop when its stdin is closed), and the variable is removed once read,
so the service's own children (workers) do not inherit it.

Each server command calls :func:`exit_with_stdin` once, with the function that starts its
graceful shutdown.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable

log = logging.getLogger(__name__)

#: Set to ``1`` by a supervisor in the environment of a child whose stdin is its lifeline.
LIFELINE_ENV = "PYME_DESK_EXIT_WITH_STDIN"

#: How long a graceful shutdown may take after the lifeline broke before the process is ended.
HARD_EXIT_AFTER_S = 15.0


def exit_with_stdin(shutdown: Callable[[], None], hard_exit_after: float = HARD_EXIT_AFTER_S) -> bool:
    """Call ``shutdown()`` when stdin reaches end-of-file, if :data:`LIFELINE_ENV` asks for it.

    If the process is still alive ``hard_exit_after`` seconds later it exits with code 1.
    Returns True when the watch was started.
    """
    if os.environ.pop(LIFELINE_ENV, "") != "1" or sys.stdin is None:
        return False
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):
        return False
    threading.Thread(target=_watch, args=(fd, shutdown, hard_exit_after),
                     name="pyme-desk-lifeline", daemon=True).start()
    return True


def _watch(fd: int, shutdown: Callable[[], None], hard_exit_after: float) -> None:
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except OSError:  # Windows reports a closed pipe as ERROR_BROKEN_PIPE
            break
    log.info("the supervisor went away (stdin closed): shutting down")
    timer = threading.Timer(hard_exit_after, os._exit, args=(1,))
    timer.daemon = True
    timer.start()
    shutdown()
