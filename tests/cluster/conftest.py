"""Three real data servers on 127.0.0.1 (ephemeral ports), each with its own root."""
import socket
from pathlib import Path

import pytest

from pyme_desk.cluster import ClusterClient
from pyme_desk.storage.server import DataServer

FILTER = "test"


class Cluster:
    """The servers, their roots and URLs, for tests to inspect what landed where."""

    def __init__(self, servers: list[DataServer]):
        self.servers = servers
        self.urls = [s.url for s in servers]
        self.roots = [Path(s.root.path) for s in servers]
        self._stopped: set[int] = set()

    def stop(self, i: int | None = None) -> None:
        """Stop server ``i`` (all when None), each once."""
        for j in range(len(self.servers)) if i is None else [i]:
            if j not in self._stopped:
                self._stopped.add(j)
                self.servers[j].stop()

    def holders(self, path: str) -> list[int]:
        """Indices of the servers whose root holds ``path`` on disk."""
        return [i for i, root in enumerate(self.roots) if (root / path).is_file()]

    def client(self, **options) -> ClusterClient:
        options.setdefault("server_filter", FILTER)
        options.setdefault("token", "")
        return ClusterClient(self.urls, **options)


def start_cluster(tmp_path: Path, n: int = 3, **options) -> Cluster:
    servers = []
    for i in range(n):
        servers.append(DataServer(tmp_path / f"root{i}", server_filter=FILTER, **options).start())
    return Cluster(servers)


@pytest.fixture
def cluster(tmp_path):
    c = start_cluster(tmp_path)
    yield c
    c.stop()


@pytest.fixture
def client(cluster):
    with cluster.client() as c:
        yield c


@pytest.fixture
def closed_port_url():
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
