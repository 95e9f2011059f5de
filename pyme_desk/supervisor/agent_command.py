"""``pyme-desk node``: run this machine's services headless with the node agent's control API.

The token comes from ``--token-file``, else the config (``desk-cluster-token`` /
``desk-token-file``), else a random one kept in ``<state dir>/node-agent.token`` (readable by
this user only) so the desk on this machine can read it.  Off loopback the services listen on
the network too and the data server requires the token for writes.
"""
from __future__ import annotations

import argparse
import os
import secrets
import threading
from pathlib import Path

from pyme_desk.config import Config, read_token_file
from pyme_desk.discovery.addresses import is_loopback
from pyme_desk.errors import UsageError
from pyme_desk.foreground import write_port_file
from pyme_desk.supervisor.agent import NodeAgent
from pyme_desk.supervisor.cluster_command import stop_on_signals
from pyme_desk.supervisor.lock import default_state_dir
from pyme_desk.supervisor.services import cluster_services
from pyme_desk.supervisor.supervisor import Supervisor

#: the agent's port unless told otherwise (next to PYME's 15346-15348)
DEFAULT_AGENT_PORT = 15349
TOKEN_FILE_NAME = "node-agent.token"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", help="address of the control API (default 127.0.0.1; 0.0.0.0 for the "
                                       "network, which puts the services on the network too)")
    parser.add_argument("--port", type=int, default=DEFAULT_AGENT_PORT,
                        help=f"control API port, 0 for any free one (default {DEFAULT_AGENT_PORT})")
    parser.add_argument("--token-file", type=Path, help="file whose first line is the cluster token")
    parser.add_argument("--root", type=Path, help="data root to serve (config: dataserver-root)")
    parser.add_argument("--workers", type=int, help="worker processes (config: nodeserver-num_workers)")
    parser.add_argument("--ruleserver", metavar="URL|auto",
                        help="join the cluster whose rule server is at URL (or found by discovery: auto) "
                             "instead of running a rule server on this node")
    parser.add_argument("--log-dir", type=Path, help="where the services' logs go")
    parser.add_argument("--port-file", type=Path, help="write {url, port, pid} as JSON here once listening")


def run(args: argparse.Namespace, config: Config) -> int:
    bind = args.bind or config.get("desk-bind")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    root = Path(args.root or config.data_root)
    workers = args.workers or config.get("nodeserver-num_workers")
    state_dir = default_state_dir()
    token_file, token = resolve_token(args.token_file, config, state_dir)
    network = not is_loopback(bind)
    services = cluster_services(root, workers, token_file=token_file if network else None, network=network,
                                ruleserver=args.ruleserver)
    log_dir = args.log_dir or config.get("desk-log-dir")
    supervisor = Supervisor(root, services, log_dir=Path(log_dir) if log_dir else None, state_dir=state_dir)
    agent = NodeAgent(supervisor, token, bind=bind, port=args.port)
    stop = threading.Event()
    stop_on_signals(stop)
    agent.start()
    try:
        if args.port_file:
            write_port_file(args.port_file, agent.url, agent.port)
        print(f"pyme-desk node: agent at {agent.url} for {root}; token in {token_file}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        print("pyme-desk node: stopping", flush=True)
        agent.stop()
    return 0


def resolve_token(token_file: Path | None, config: Config, state_dir: Path) -> tuple[Path, str]:
    """``(file, token)``: the given file, else the config's token, else a kept random one."""
    if token_file is not None:
        return token_file, read_token_file(token_file)
    kept = state_dir / TOKEN_FILE_NAME
    configured = config.cluster_token
    if configured is None and kept.exists():
        return kept, read_token_file(kept)
    token = configured or secrets.token_urlsafe(24)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    except OSError as e:
        raise UsageError(f"cannot write the node agent's token file {kept}: {e.strerror or e}") from None
    return kept, token
