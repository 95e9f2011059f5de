"""The WebDAV server: wsgidav over :class:`~pyme_desk.webdav.provider.ClusterProvider`, on cheroot.

``WebDAVServer`` is a plain object like every pyme-desk server: ``start()`` returns once it
listens, ``url`` says where, ``stop()`` ends it.  Every request needs HTTP Basic credentials
(see :mod:`pyme_desk.webdav.auth`); because Basic sends the password with each request, the
server only listens off loopback when it has a TLS certificate and key, and refuses to start
otherwise.  So Windows maps the drive over ``https://`` with no registry change (Windows
only refuses Basic over plain http).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from pyme_desk.cluster import ClusterClient
from pyme_desk.discovery.addresses import advertise_address, is_loopback
from pyme_desk.errors import UsageError
from pyme_desk.webdav.auth import Authenticator
from pyme_desk.webdav.provider import READ_ONLY, ClusterProvider

log = logging.getLogger(__name__)

REALM = "pyme-desk cluster"
DEFAULT_PORT = 9090
#: methods a read-only share answers with 403 and an explanation (wsgidav's own answer is a bare 405)
WRITE_METHODS = frozenset({"PUT", "MKCOL", "DELETE", "MOVE", "COPY", "PROPPATCH", "LOCK", "UNLOCK"})
#: block size wsgidav reads and writes bodies in (its default of 8 KiB costs throughput)
BLOCK_SIZE = 1 << 20


def _domain_controller(authenticator: Authenticator) -> type:
    """A wsgidav domain controller class bound to ``authenticator`` (wsgidav instantiates it)."""
    from wsgidav.dc.base_dc import BaseDomainController

    class ClusterDomainController(BaseDomainController):
        def get_domain_realm(self, path_info, environ):
            return REALM

        def require_authentication(self, realm, environ):
            return True

        def basic_auth_user(self, realm, user_name, password, environ):
            return authenticator.check(user_name, password)

        def supports_http_digest_auth(self):
            return False

    return ClusterDomainController


def _refuse_writes(app):
    """WSGI wrapper of a read-only share: write methods get 403 with the reason, the rest ``app``."""
    body = READ_ONLY.encode()

    def wrapped(environ, start_response):
        if environ["REQUEST_METHOD"] in WRITE_METHODS:
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wrapped


class WebDAVServer:
    """Serve the cluster reached through ``client`` as a WebDAV share.

    ``users_file`` and/or ``token`` say who may log in (at least one is needed); ``cert`` and
    ``key`` (PEM files) switch on TLS, which any non-loopback ``bind`` requires.
    """

    def __init__(self, client: ClusterClient, *, bind: str = "127.0.0.1", port: int = 0,
                 users_file: Path | None = None, token: str | None = None, read_only: bool = False,
                 cert: Path | None = None, key: Path | None = None, threads: int = 16,
                 placeholder_s: float = 30.0) -> None:
        if (cert is None) != (key is None):
            raise UsageError("--cert and --key go together: give both PEM files, or neither")
        if cert is None and not is_loopback(bind):
            raise UsageError(f"refusing to serve WebDAV on {bind} without TLS: HTTP Basic would send "
                             "passwords in clear text; pass --cert and --key, or bind to 127.0.0.1")
        for f in (cert, key):
            if f is not None and not Path(f).is_file():
                raise UsageError(f"TLS file {f} does not exist")
        self.client = client
        self.bind = bind
        self.port = port
        self.cert, self.key = cert, key
        self.authenticator = Authenticator(users_file, token)
        self.provider = ClusterProvider(client, read_only=read_only, placeholder_s=placeholder_s)
        self.threads = threads
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def _app(self):
        from wsgidav.wsgidav_app import WsgiDAVApp

        writable = not self.provider.read_only
        app = WsgiDAVApp({
            "provider_mapping": {"/": self.provider},
            "http_authenticator": {
                "domain_controller": _domain_controller(self.authenticator),
                "accept_basic": True, "accept_digest": False, "default_to_digest": False,
            },
            "lock_storage": True if writable else None,
            "property_manager": True if writable else None,
            "block_size": BLOCK_SIZE,
            "verbose": 1,
            "logging": {"enable": False},
            "suppress_version_info": True,
            "dir_browser": {"enable": True, "response_trailer": "pyme-desk", "davmount": False,
                            "ms_sharepoint_support": False, "libre_office_support": False},
        })
        return app if writable else _refuse_writes(app)

    def start(self) -> "WebDAVServer":
        from cheroot import wsgi

        server = wsgi.Server((self.bind, self.port), self._app(), numthreads=self.threads,
                             server_name="pyme-desk-webdav", timeout=60)
        if self.cert is not None:
            from cheroot.ssl.builtin import BuiltinSSLAdapter
            try:
                server.ssl_adapter = BuiltinSSLAdapter(str(self.cert), str(self.key))
            except (OSError, ValueError) as e:
                raise UsageError(f"cannot use the TLS certificate/key: {e}") from None
        try:
            server.prepare()
        except OSError as e:
            raise UsageError(f"cannot listen on {self.bind}:{self.port}: {e.strerror or e}") from None
        self.port = server.bind_addr[1]
        host = "127.0.0.1" if is_loopback(self.bind) else self.bind
        if host in ("", "0.0.0.0", "::"):
            host, _warning = advertise_address()
        self.url = f"{'https' if self.cert else 'http'}://{host}:{self.port}/"
        self._server = server
        self._thread = threading.Thread(target=server.serve, name="webdav", daemon=True)
        self._thread.start()
        log.info("WebDAV share of cluster %r at %s%s", self.client.server_filter, self.url,
                 " (read-only)" if self.provider.read_only else "")
        return self

    def stop(self) -> None:
        """Store pending empty files, then stop serving (requests in flight get a few seconds)."""
        if self._server is None:
            return
        self.provider.store_due_placeholders(all_now=True)
        self._server.stop()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> "WebDAVServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
