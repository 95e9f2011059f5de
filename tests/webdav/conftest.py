"""Two real data servers and a WebDAV server in front of them, all on 127.0.0.1."""
import pytest

from pyme_desk.cluster import ClusterClient
from pyme_desk.storage.server import DataServer
from pyme_desk.webdav.auth import set_user
from pyme_desk.webdav.server import WebDAVServer

FILTER = "dav"
USER, PASSWORD = "alice", "correct horse battery"
TOKEN = "cluster-secret-token"


@pytest.fixture
def data_servers(tmp_path):
    servers = [DataServer(tmp_path / f"root{i}", server_filter=FILTER).start() for i in range(2)]
    yield servers
    for s in servers:
        s.stop()


def cluster_client(urls):
    return ClusterClient(urls, server_filter=FILTER, token="")


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "webdav-users"
    set_user(path, USER, PASSWORD)
    return path


@pytest.fixture
def make_dav(data_servers, users_file):
    started = []

    def make(**options):
        client = cluster_client([s.url for s in data_servers])
        options.setdefault("users_file", users_file)
        dav = WebDAVServer(client, **options).start()
        started.append((dav, client))
        return dav

    yield make
    for dav, client in started:
        dav.stop()
        client.close()
