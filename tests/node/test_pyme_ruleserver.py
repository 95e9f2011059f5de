"""A node server against a rule server that speaks only PYME's endpoints (no heartbeats, no nodeID)."""
from __future__ import annotations

import json
import threading

from pyme_desk.node.server import NodeServer
from pyme_desk.web.errors import HTTPError
from pyme_desk.web.jsonapi import JSONApp, json_body
from pyme_desk.web.service import BackgroundServer

from .conftest import node_status, wait_for

TEMPLATE = json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop"})


class PymeShapedRuleServer:
    """One rule of ``n`` tasks behind PYME's §7.2 shapes; ``/node_heartbeat`` is a 404 as in PYME."""

    def __init__(self, n: int, template: str = TEMPLATE) -> None:
        self.template = template
        self.available = set(range(n))
        self.done: dict[int, int] = {}
        self.heartbeat_calls = 0
        self.return_calls = 0
        self.lock = threading.Lock()
        self.service = BackgroundServer(self.app, "127.0.0.1", 0, name="pyme-shaped rule server")

    def app(self) -> JSONApp:
        return JSONApp({"task_advertisements": self.pyme(self.adverts), "bid_on_tasks": self.pyme(self.bid),
                        "handin": self.pyme(self.handin), "node_heartbeat": self.heartbeat,
                        "return_tasks": self.give_back})

    def pyme(self, handler):
        """PYME passes query parameters to handlers as arguments: an unknown one is a 500."""
        def checked(request, body):
            if request.query:
                raise HTTPError(500, f"unexpected keyword arguments {sorted(request.query)}")
            return handler(request, body)
        return checked

    def adverts(self, request, body):
        with self.lock:
            ids = sorted(self.available)
        return [{"ruleID": "000001-pyme", "taskTemplate": self.template, "availableTaskIDs": ids}] if ids else []

    def bid(self, request, body):
        awards = []
        for bid in json_body(body):
            with self.lock:
                won = [i for i in bid["taskIDs"] if i in self.available]
                self.available.difference_update(won)
            awards.append({"ruleID": bid["ruleID"], "taskIDs": won, "template": self.template})
        return awards

    def handin(self, request, body):
        for entry in json_body(body):
            for task_id, status in zip(entry["taskIDs"], entry["status"]):
                with self.lock:
                    self.done[task_id] = status
        return {"ok": "True"}

    def give_back(self, request, body):
        """Not PYME's: only here to see that a node never calls it."""
        self.return_calls += 1
        raise HTTPError(404, "no such endpoint: /return_tasks")

    def heartbeat(self, request, body):
        self.heartbeat_calls += 1
        raise HTTPError(404, "no such endpoint: /node_heartbeat")


def test_a_rule_server_without_heartbeats_is_asked_once_and_still_served():
    rs = PymeShapedRuleServer(300)
    port = rs.service.start()
    node = NodeServer(ruleserver=f"http://127.0.0.1:{port}", workers=1).start()
    try:
        wait_for(lambda: len(rs.done) == 300, 20, "every task to be handed in")
        assert set(rs.done.values()) == {3}
        wait_for(lambda: node_status(node.url)["handinsPending"] == 0, 5, "the hand-ins to be sent")
        assert rs.heartbeat_calls == 1  # the first-contact probe; the 404 ended heart-beating
        assert node_status(node.url)["connected"]
    finally:
        node.stop()
        rs.service.stop()


def test_a_node_stopping_with_a_queue_leaves_it_to_a_pyme_rule_servers_time_out():
    rs = PymeShapedRuleServer(300, json.dumps({"id": "{{ruleID}}~{{taskID}}", "type": "noop",
                                               "taskdef": {"sleep": 0.02}}))
    port = rs.service.start()
    node = NodeServer(ruleserver=f"http://127.0.0.1:{port}", workers=1, chunk_size=100, drain_timeout=0.3).start()
    try:
        wait_for(lambda: node_status(node.url)["nQueued"] >= 50 and rs.done, 20, "a queue and a first hand-in")
    finally:
        node.stop()
        rs.service.stop()
    assert rs.return_calls == 0 and node.tasks_returned == 0
    assert 0 < len(rs.done) < 300 - len(rs.available)  # won tasks were left over, as PYME expects
    assert set(rs.done.values()) == {3}
