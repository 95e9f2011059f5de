"""The stdin lifeline: a child that opted in stops when its parent's end of the pipe closes."""
from __future__ import annotations

import os
import subprocess
import sys

from pyme_desk.lifeline import LIFELINE_ENV

CHILD = """
import sys, threading
from pyme_desk.lifeline import exit_with_stdin, LIFELINE_ENV
import os
stop = threading.Event()
started = exit_with_stdin(stop.set)
print(started, os.environ.get(LIFELINE_ENV), flush=True)
if not stop.wait(20):
    sys.exit(5)
print("stopped", flush=True)
"""


def run_child(opt_in: bool) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(LIFELINE_ENV, None)
    if opt_in:
        env[LIFELINE_ENV] = "1"
    return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


def test_closing_stdin_stops_a_child_that_opted_in():
    child = run_child(True)
    assert child.stdout.readline().split() == ["True", "None"]  # not passed on to its own children
    child.stdin.close()
    assert child.wait(10) == 0
    assert child.stdout.read().strip() == "stopped"


def test_without_the_opt_in_stdin_is_left_alone():
    child = run_child(False)
    assert child.stdout.readline().split() == ["False", "None"]
    child.stdin.close()
    try:
        assert child.wait(0.5) is None
    except subprocess.TimeoutExpired:
        pass
    finally:
        child.kill()
        child.wait()
