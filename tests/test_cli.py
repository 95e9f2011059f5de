"""The pyme-desk command line as a user runs it."""
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "pyme_desk", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand():
    from pyme_desk.cli import COMMANDS

    r = run("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout


def test_each_subcommand_has_help():
    from pyme_desk.cli import COMMANDS

    for name in COMMANDS:
        r = run(name, "--help")
        assert r.returncode == 0 and "usage" in r.stdout, name


def test_unknown_subcommand_is_exit_2_one_line():
    r = run("no-such-command")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_storage_module_runs_as_python_m():
    r = subprocess.run([sys.executable, "-m", "pyme_desk.storage", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--root" in r.stdout
