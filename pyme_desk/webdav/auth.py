"""Who may use the WebDAV share: a users file with scrypt-hashed passwords, or the cluster token.

The users file is plain text, one user a line (``#`` starts a comment)::

    alice:scrypt$16384$8$1$<salt, base64>$<hash, base64>

Each password is hashed with :func:`hashlib.scrypt` and its own random 16-byte salt; checking
compares in constant time.  scrypt is slow on purpose (tens of ms), and HTTP Basic sends the
credentials with every request, so a credential that checked out once is remembered as an
HMAC under a key that lives only in this process; the file is re-read when it changes.

When a cluster token is configured, user ``cluster`` with the token as password is accepted too.
There is no default user and no default password: with neither a users file nor a token nobody
gets in, and the server refuses to start (see :mod:`pyme_desk.webdav.server`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from pathlib import Path

from pyme_desk.errors import UsageError

#: The user name that logs in with the cluster token as password.
TOKEN_USER = "cluster"
#: scrypt cost: N=2**14, r=8, p=1 uses 16 MiB and ~50 ms per check (OWASP's minimum is N=2**13).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LENGTH = 8
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_password(password: str) -> str:
    """The users-file form of ``password``: ``scrypt$N$r$p$salt$hash`` with a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """Does ``password`` match a ``hash_password()`` string?  False for malformed entries."""
    try:
        scheme, n, r, p, salt64, hash64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt64), base64.b64decode(hash64)
        digest = _scrypt(password, salt, int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * r * (n + p + 2), dklen=length)


def check_user_name(name: str) -> str:
    if not _USER_NAME.match(name):
        raise UsageError(f"user name {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-'")
    if name == TOKEN_USER:
        raise UsageError(f"user name {TOKEN_USER!r} is reserved for logging in with the cluster token")
    return name


def read_users(path: Path) -> dict[str, str]:
    """``{name: stored hash}`` from a users file; UsageError naming the line if it is malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"users file {path} does not exist; create it with "
                         f"'pyme-desk webdav-user add NAME --users {path}'") from None
    except OSError as e:
        raise UsageError(f"cannot read users file {path}: {e.strerror or e}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not _USER_NAME.match(name) or not stored.startswith("scrypt$"):
            raise UsageError(f"{path}, line {number}: expected 'name:scrypt$...'")
        users[name] = stored
    return users


def set_user(path: Path, name: str, password: str) -> bool:
    """Add or replace ``name`` in the users file (created owner-only); True if it was new."""
    check_user_name(name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    path = Path(path)
    users = read_users(path) if path.exists() else {}
    new = name not in users
    users[name] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# pyme-desk WebDAV users: name:scrypt hash (edit with 'pyme-desk webdav-user add')\n"
    text += "".join(f"{n}:{h}\n" for n, h in sorted(users.items()))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return new


class Authenticator:
    """Checks Basic credentials against a users file and/or the cluster token (thread-safe)."""

    def __init__(self, users_file: Path | None = None, token: str | None = None):
        if users_file is None and not token:
            raise UsageError("the WebDAV share needs users: pass --users FILE (create it with "
                             "'pyme-desk webdav-user add NAME') or configure desk-cluster-token")
        self.users_file = Path(users_file) if users_file is not None else None
        self.token = token or None
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._users: dict[str, str] = {}
        self._loaded_stamp: tuple[int, int] | None = None
        self._verified: dict[str, bytes] = {}
        if self.users_file is not None:
            self._reload()

    def check(self, user: str, password: str) -> bool:
        """True if ``user``/``password`` may use the share."""
        if self.token and user == TOKEN_USER:
            return hmac.compare_digest(password.encode("utf-8"), self.token.encode("utf-8"))
        if self.users_file is None:
            return False
        self._reload_if_changed()
        mac = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        with self._lock:
            stored = self._users.get(user)
            remembered = self._verified.get(user)
        if stored is None:
            return False
        if remembered is not None and hmac.compare_digest(mac, remembered):
            return True
        if not verify_password(password, stored):
            return False
        with self._lock:
            if self._users.get(user) == stored:
                self._verified[user] = mac
        return True

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.users_file.stat()  # type: ignore[union-attr]
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _reload_if_changed(self) -> None:
        if self._stamp() != self._loaded_stamp:
            try:
                self._reload()
            except UsageError:
                pass  # a half-edited file: keep the users we have

    def _reload(self) -> None:
        stamp = self._stamp()
        users = read_users(self.users_file)  # type: ignore[arg-type]
        with self._lock:
            self._users = users
            self._verified.clear()
            self._loaded_stamp = stamp
