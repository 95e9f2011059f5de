"""A real rule server on 127.0.0.1:0 with short intervals, and a small JSON client for it."""
from __future__ import annotations

import json

import pytest
import requests

from pyme_desk.scheduler.server import RuleServer

TEMPLATE = '{"id": "{{ruleID}}~{{taskID}}", "type": "localization", "taskdef": {"frameIndex": "{{taskID}}"}}'


class Client:
    """Calls one rule server the way PYME's clients do (GET with a JSON body)."""

    def __init__(self, base: str, node_id: str | None = None) -> None:
        self.base = base
        self.node_id = node_id
        self.session = requests.Session()

    def raw(self, path: str, body=None, method: str = "GET", **params) -> requests.Response:
        if self.node_id is not None:
            params.setdefault("nodeID", self.node_id)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        return self.session.request(method, self.base + path, params=params, data=data, timeout=10)

    def call(self, path: str, body=None, **params):
        r = self.raw(path, body, **params)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def add_rule(self, n: int = 10, release: bool = True, template: str = TEMPLATE, **params) -> str:
        if release:
            params.setdefault("release_start", 0)
            params.setdefault("release_end", n)
        params.setdefault("max_tasks", n)
        reply = self.call("/add_integer_id_rule", {"template": template}, **params)
        assert reply["ok"] == "True"
        return reply["ruleID"]

    def bid(self, rule_id: str, ids, cost: float = 0.01) -> list[int]:
        ids = list(ids)
        reply = self.call("/bid_on_tasks", [{"ruleID": rule_id, "taskIDs": ids, "costs": [cost] * len(ids)}])
        return reply[0]["taskIDs"]

    def handin(self, rule_id: str, ids, status: int = 3):
        ids = list(ids)
        return self.call("/handin", [{"ruleID": rule_id, "taskIDs": ids, "status": [status] * len(ids)}])

    def info(self, rule_id: str) -> dict:
        return self.call("/distributor/queues")["result"][rule_id]

    def close(self) -> None:
        self.session.close()


def make_server(**kwargs) -> RuleServer:
    settings = dict(advert_interval=0.0, sweep_interval=0.05, auction_wait=0.2, journal_interval=0.05)
    settings.update(kwargs)
    return RuleServer(**settings)


@pytest.fixture
def server():
    with make_server() as srv:
        yield srv


@pytest.fixture
def client(server):
    c = Client(f"http://127.0.0.1:{server.port}")
    yield c
    c.close()


@pytest.fixture
def node_client(server):
    """Make clients identified as node servers (nodeID on every call)."""
    clients = []

    def make(node_id: str) -> Client:
        c = Client(f"http://127.0.0.1:{server.port}", node_id)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


@pytest.fixture
def launch():
    """Start a server with the given settings; returns a factory of clients for it."""
    servers, clients = [], []

    def start(**settings):
        srv = make_server(**settings).start()
        servers.append(srv)

        def connect(node_id=None):
            c = Client(f"http://127.0.0.1:{srv.port}", node_id)
            clients.append(c)
            return c
        return connect
    yield start
    for c in clients:
        c.close()
    for srv in servers:
        srv.stop()
