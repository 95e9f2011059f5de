"""``pyme-desk webdav-user add NAME``: add a user (or set a password) in the WebDAV users file."""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from pyme_desk.config import Config
from pyme_desk.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("add",), help="add a user, or set a user's new password")
    parser.add_argument("name", help="user name")
    parser.add_argument("--users", type=Path, help="users file (default: desk-webdav-users or ~/.PYME/webdav-users)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")


def run(args: argparse.Namespace, config: Config) -> int:
    from pyme_desk.webdav.auth import check_user_name, set_user
    from pyme_desk.webdav.command import default_users_file

    check_user_name(args.name)
    path = args.users or default_users_file(config)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    new = set_user(path, args.name, password)
    print(f"{'added' if new else 'updated'} user {args.name} in {path}")
    return 0
