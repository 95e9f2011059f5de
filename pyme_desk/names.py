"""Computer and service names as PYME forms them (protocol.md §1.2)."""
from __future__ import annotations

import os
import platform
import sys
from typing import Mapping

#: The longest service name zeroconf accepts as an instance label.
MAX_SERVICE_NAME = 63


def computer_name(env: Mapping[str, str] | None = None) -> str:
    """``$PYME_COMPUTERNAME``, else ``%COMPUTERNAME%`` on Windows, else the first label of the node name."""
    env = os.environ if env is None else env
    if env.get("PYME_COMPUTERNAME"):
        return env["PYME_COMPUTERNAME"]
    if sys.platform == "win32" and env.get("COMPUTERNAME"):
        return env["COMPUTERNAME"]
    return platform.uname().node.split(".")[0]


def service_name(process_name: str, host: str | None = None, pid: int | None = None) -> str:
    """``<process>:<host> - PID:<pid>``, with the prefix cut so the whole fits in 63 characters."""
    host = computer_name() if host is None else host
    pid = os.getpid() if pid is None else pid
    pid_s = str(pid)
    prefix = f"{process_name}:{host} - "[: MAX_SERVICE_NAME - 4 - len(pid_s)]
    return f"{prefix}PID:{pid_s}"


def dataserver_process_name(server_filter: str) -> str:
    return f"PYMEDataServer [{server_filter}]"
