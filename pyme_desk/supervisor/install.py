"""``pyme-desk install-service``: start the node agent at boot as the current, unprivileged user.

* Linux: a systemd *user* unit ``pyme-desk-node.service`` in ``~/.config/systemd/user`` (or
  ``--unit-dir``), then ``systemctl --user daemon-reload`` and ``enable --now``.  A user unit
  starts at boot, before anyone logs in, only with lingering on: ``loginctl enable-linger``
  (printed as the next step when it is off).
* Windows: a scheduled task ``pyme-desk-node`` with a boot trigger that runs as this user
  whether logged on or not (``schtasks /Create /XML ... /RU <user> /RP``, which asks for the
  password), restarting on failure.

``--dry-run`` prints what would be written and run and changes nothing.  The unit/task text is
built by :func:`systemd_unit` and :func:`windows_task_xml`; :func:`install_commands` gives the
commands, so all of it can be checked without touching the system.
"""
from __future__ import annotations

import argparse
import getpass
import os
import shlex
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from pyme_desk.config import Config
from pyme_desk.errors import UsageError, refuse_root

SERVICE_NAME = "pyme-desk-node"


def agent_command(root: Path | None, extra: list[str] | None = None) -> list[str]:
    """The command line the boot service runs: this Python, ``-m pyme_desk node``."""
    argv = [sys.executable, "-m", "pyme_desk", "node"]
    if root is not None:
        argv += ["--root", str(Path(root).expanduser().absolute())]
    return argv + list(extra or [])


def default_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_unit(argv: list[str]) -> str:
    """A systemd user unit that runs ``argv`` and restarts it when it fails."""
    return "\n".join([
        "[Unit]",
        "Description=pyme-desk node agent (data, rule and node servers)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={' '.join(_systemd_quote(a) for a in argv)}",
        "Restart=on-failure",
        "RestartSec=5",
        "KillMode=mixed",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ])


def windows_task_xml(argv: list[str], user: str) -> str:
    """Task Scheduler XML: run ``argv`` as ``user`` at boot, restart on failure, no time limit."""
    program, arguments = argv[0], " ".join(_windows_quote(a) for a in argv[1:])
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>pyme-desk node agent (data, rule and node servers)</Description>
  </RegistrationInfo>
  <Triggers>
    <BootTrigger>
      <Enabled>true</Enabled>
      <Delay>PT30S</Delay>
    </BootTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{escape(user)}</UserId>
      <LogonType>Password</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>999</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(program)}</Command>
      <Arguments>{escape(arguments)}</Arguments>
    </Exec>
  </Actions>
</Task>
"""


def install_commands(platform: str, unit_or_xml: Path, user: str) -> list[list[str]]:
    """The commands that register the written unit (Linux) or task XML (Windows)."""
    if platform == "win32":
        return [["schtasks", "/Create", "/TN", SERVICE_NAME, "/XML", str(unit_or_xml), "/RU", user, "/RP", "/F"]]
    return [["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", f"{SERVICE_NAME}.service"]]


def uninstall_commands(platform: str) -> list[list[str]]:
    if platform == "win32":
        return [["schtasks", "/Delete", "/TN", SERVICE_NAME, "/F"]]
    return [["systemctl", "--user", "disable", "--now", f"{SERVICE_NAME}.service"],
            ["systemctl", "--user", "daemon-reload"]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="data root the agent serves (config: dataserver-root)")
    parser.add_argument("--unit-dir", type=Path,
                        help="where the unit (Linux) or task XML (Windows) is written "
                             "(default: ~/.config/systemd/user, or the per-user state directory)")
    parser.add_argument("--no-enable", action="store_true",
                        help="write the file only; do not register or start it")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    parser.add_argument("agent_args", nargs=argparse.REMAINDER,
                        help="after --: more options for 'pyme-desk node' (e.g. -- --bind 0.0.0.0)")


def run(args: argparse.Namespace, config: Config) -> int:
    refuse_root("boot service installer")
    extra = [a for a in args.agent_args if a != "--"]
    argv = agent_command(args.root or config.data_root, extra)
    user = getpass.getuser()
    if sys.platform == "win32":
        from pyme_desk.supervisor.lock import default_state_dir

        target = (args.unit_dir or default_state_dir()) / f"{SERVICE_NAME}.xml"
        text, encoding = windows_task_xml(argv, user), "utf-16"
    else:
        target = (args.unit_dir or default_unit_dir()) / f"{SERVICE_NAME}.service"
        text, encoding = systemd_unit(argv), "utf-8"
    commands = [] if args.no_enable else install_commands(sys.platform, target, user)
    if args.dry_run:
        print(f"would write {target}:\n{text}")
        for c in commands:
            print("would run: " + " ".join(shlex.quote(a) for a in c))
        return 0
    _write_atomically(target, text, encoding)
    print(f"wrote {target}")
    run_commands(commands)
    if sys.platform != "win32" and not args.no_enable and not _linger_enabled(user):
        print(f"to start it at boot before anyone logs in, run once: sudo loginctl enable-linger {user}")
    return 0


def _write_atomically(path: Path, text: str, encoding: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding=encoding)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def run_commands(commands: list[list[str]]) -> None:
    """Run each command on this console (schtasks asks for the password there)."""
    for c in commands:
        try:
            code = subprocess.run(c).returncode
        except OSError as e:
            raise UsageError(f"could not run {' '.join(c)}: {e.strerror or e}") from None
        if code != 0:
            raise UsageError(f"{' '.join(c)} failed with exit code {code}")
        print("ran: " + " ".join(c))


def _linger_enabled(user: str) -> bool:
    return Path("/var/lib/systemd/linger", user).exists()


def _systemd_quote(arg: str) -> str:
    """Quote one ExecStart word (systemd splits on spaces, honours double quotes, expands % and $)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if not arg or any(c in arg for c in ' \t"\'\\'):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _windows_quote(arg: str) -> str:
    return subprocess.list2cmdline([arg])
