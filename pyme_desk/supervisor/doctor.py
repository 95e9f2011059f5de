"""``pyme-desk doctor``: check this machine's cluster setup; print each problem with its fix.

Each check returns :class:`Finding` rows: ``ok``, ``warning`` (works, but maybe not as meant)
or ``problem`` (the cluster will not work as configured).  Exit code 1 when there is a problem.
The checks follow the seed's troubleshooting notes (the ``127.0.1.1`` hosts entry, permissions
on the data directory) and the usual causes of a node that cannot be reached.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import psutil

from pyme_desk.config import Config, ConfigError
from pyme_desk.discovery.addresses import advertise_address, is_loopback
from pyme_desk.errors import ALLOW_ROOT_ENV

OK, WARNING, PROBLEM = "ok", "warning", "problem"
#: file systems mounted on demand or over the network: slow, and may vanish under a server
_AUTOMOUNT_FS = {"autofs"}
_NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "9p", "afs"}


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # ok | warning | problem
    message: str
    fix: str = ""


def check_user() -> list[Finding]:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        level = WARNING if os.environ.get(ALLOW_ROOT_ENV) == "1" else PROBLEM
        return [Finding("user", level, "running as root: the servers refuse to run as root",
                        "run pyme-desk as an ordinary user that owns the data root")]
    return [Finding("user", OK, "not running as root")]


def check_config(config: Config) -> list[Finding]:
    found = [Finding("config", OK, "config files: " + (", ".join(map(str, config.sources)) or "none (defaults)"))]
    for key in ("dataserver-port", "ruleserver-port", "nodeserver-port"):
        value = config.get(key)
        if not isinstance(value, int) or not 0 <= value < 65536:
            found.append(Finding("config", PROBLEM, f"{key} is {value!r}, not a port number",
                                 f"set {key} to a number from 0 to 65535 in config.yaml"))
    workers = config.get("nodeserver-num_workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        found.append(Finding("config", PROBLEM, f"nodeserver-num_workers is {workers!r}",
                             "set nodeserver-num_workers to a positive number, or remove it (CPU count)"))
    try:
        config.cluster_token
    except ConfigError as e:
        found.append(Finding("config", PROBLEM, str(e), "fix desk-token-file or remove it"))
    return found


def check_data_root(root: Path) -> list[Finding]:
    name = "data root"
    root = Path(root).expanduser()
    if not root.exists():
        return [Finding(name, WARNING, f"{root} does not exist yet (the data server creates it)",
                        f"create it on a disk with room for the data: mkdir -p {root}")]
    if not root.is_dir():
        return [Finding(name, PROBLEM, f"{root} is not a directory", "set dataserver-root to a directory")]
    found = []
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".pyme-desk-doctor-"):
            pass
        found.append(Finding(name, OK, f"{root} exists and is writable"))
    except OSError as e:
        found.append(Finding(name, PROBLEM, f"{root} is not writable: {e.strerror or e}",
                             f"give this user ownership of it (e.g. sudo chown -R {_user()} {root})"))
    real = Path(os.path.realpath(root))
    if real == Path(os.path.realpath(Path.home())):
        found.append(Finding(name, PROBLEM, f"{root} is the home directory: the whole of it would be served",
                             "use a dedicated directory, e.g. ~/PYMEData"))
    if real == Path(real.anchor):
        found.append(Finding(name, PROBLEM, f"{root} is the root of a file system",
                             "use a dedicated directory on that disk"))
    fstype, mountpoint = _mount_of(real)
    if fstype in _AUTOMOUNT_FS:
        found.append(Finding(name, PROBLEM, f"{root} is on an automount ({mountpoint}): it can be "
                             "unmounted under a running server", "mount the disk permanently (fstab) or use a local disk"))
    elif fstype in _NETWORK_FS:
        found.append(Finding(name, WARNING, f"{root} is on a network file system ({fstype} at {mountpoint}); "
                             "serving it is slow and the cluster's locality is lost", "use a local disk"))
    return found


def check_address(config: Config) -> list[Finding]:
    found = []
    try:
        by_name = socket.gethostbyname(socket.gethostname())
    except OSError:
        by_name = None
    if by_name is not None and by_name.startswith("127.") and by_name != "127.0.0.1":
        found.append(Finding("address", WARNING,
                             f"this computer's name resolves to {by_name} (the /etc/hosts pitfall): "
                             "PYME servers here would advertise an address other machines cannot reach",
                             "remove the '127.0.1.1 <hostname>' line from /etc/hosts and let DNS give the "
                             "name, or map it to this machine's static IP; pyme-desk itself advertises the "
                             "default-route address"))
    address, warning = advertise_address(None)
    if warning:
        found.append(Finding("address", WARNING, warning,
                             "connect this machine to the cluster network, or pass --advertise-address"))
    else:
        found.append(Finding("address", OK, f"services would advertise {address}"))
    bind = config.get("desk-bind")
    if is_loopback(str(bind)):
        found.append(Finding("address", OK, f"desk-bind is {bind}: services are reachable from this machine "
                             "only (a cluster of one); set desk-bind: 0.0.0.0 for a multi-computer cluster"))
    return found


def check_ports(config: Config) -> list[Finding]:
    found = []
    for key in ("dataserver-port", "ruleserver-port", "nodeserver-port"):
        port = config.get(key)
        if not isinstance(port, int) or port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
                found.append(Finding("ports", OK, f"port {port} ({key}) is free"))
            except OSError:
                found.append(Finding("ports", WARNING, f"port {port} ({key}) is in use{_owner(port)}",
                                     f"stop what holds it, or choose another {key}; a cluster of one uses "
                                     "free ports and is not affected"))
    return found


def check_firewall() -> list[Finding]:
    if sys.platform != "win32":
        return []
    return [Finding("firewall", WARNING, "Windows Firewall blocks incoming connections to Python unless allowed",
                    f'allow it once (as administrator): netsh advfirewall firewall add rule name="pyme-desk" '
                    f'dir=in action=allow program="{sys.executable}" enable=yes profile=private,domain')]


def check_zeroconf() -> list[Finding]:
    address, warning = advertise_address(None)
    if warning:
        return [Finding("zeroconf", WARNING, "no network interface for zeroconf; only this machine can "
                        "find its services", "connect to the cluster network")]
    try:
        from zeroconf import IPVersion, Zeroconf

        zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        zc.close()
    except Exception as e:
        return [Finding("zeroconf", PROBLEM, f"cannot open zeroconf (mDNS, UDP 5353) on {address}: {e}",
                        "allow UDP port 5353 (multicast 224.0.0.251) in the firewall; or list servers "
                        "in desk-static-dataservers")]
    return [Finding("zeroconf", OK, f"zeroconf (mDNS) opens on {address}")]


def check_gpu() -> list[Finding]:
    from pyme_desk.monitor.gpu import gpu_snapshot

    snap = gpu_snapshot()
    found = []
    if snap.available:
        names = ", ".join(g.name or f"GPU {g.index}" for g in snap.gpus)
        found.append(Finding("gpu", OK, f"NVML sees {names}"))
    else:
        found.append(Finding("gpu", WARNING, snap.reason,
                             "for GPU fitting install the NVIDIA driver (and pip install nvidia-ml-py); "
                             "CPU fitting works without"))
    if importlib.util.find_spec("pycuda") is None:
        found.append(Finding("gpu", WARNING, "pycuda is not installed: localization runs on the CPU",
                             "pip install 'pyme-desk[gpu]' with the CUDA toolkit present"))
    else:
        found.append(Finding("gpu", OK, "pycuda is installed"))
    return found


def run_checks(config: Config) -> list[Finding]:
    checks: list[Callable[[], list[Finding]]] = [
        check_user, lambda: check_config(config), lambda: check_data_root(config.data_root),
        lambda: check_address(config), lambda: check_ports(config), check_firewall, check_zeroconf, check_gpu]
    found: list[Finding] = []
    for check in checks:
        try:
            found += check()
        except Exception as e:  # a check that breaks is itself worth reporting
            found.append(Finding("doctor", WARNING, f"a check could not run: {type(e).__name__}: {e}"))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, help="data root to check (config: dataserver-root)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args: argparse.Namespace, config: Config) -> int:
    if args.root is not None:
        config = Config(values={**config.values, "dataserver-root": str(args.root)},
                        sources=config.sources, env=config.env)
    found = run_checks(config)
    if args.json:
        print(json.dumps([asdict(f) for f in found], indent=1))
    else:
        for f in found:
            print(f"[{f.level:>7}] {f.check}: {f.message}")
            if f.fix and f.level != OK:
                print(f"          fix: {f.fix}")
        problems = sum(f.level == PROBLEM for f in found)
        warnings = sum(f.level == WARNING for f in found)
        print(f"{problems} problem(s), {warnings} warning(s)")
    return 1 if any(f.level == PROBLEM for f in found) else 0


def _mount_of(path: Path) -> tuple[str, str]:
    """(file system type, mount point) of the mount holding ``path``; the deepest match wins."""
    best = ("", "")
    try:
        partitions = psutil.disk_partitions(all=True)
    except Exception:
        return best
    for p in partitions:
        mp = p.mountpoint
        if (str(path) == mp or str(path).startswith(mp.rstrip(os.sep) + os.sep)) and len(mp) > len(best[1]):
            best = (p.fstype, mp)
    return best


def _owner(port: int) -> str:
    try:
        for c in psutil.net_connections("inet"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return f" by {psutil.Process(c.pid).name()} (pid {c.pid})"
    except (psutil.Error, OSError):
        pass
    return ""


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return "<user>"
