"""The cluster as a WebDAV share (``pyme-desk webdav``), so file managers can map it as a drive.

:class:`WebDAVServer` serves the merged namespace of a cluster's data servers through
:class:`ClusterProvider` (wsgidav on cheroot); :class:`Authenticator` checks logins against a
users file of scrypt hashes or the cluster token.
"""
from pyme_desk.webdav.auth import Authenticator, hash_password, set_user, verify_password
from pyme_desk.webdav.provider import ClusterProvider
from pyme_desk.webdav.server import WebDAVServer

__all__ = ["WebDAVServer", "ClusterProvider", "Authenticator", "hash_password", "verify_password", "set_user"]
