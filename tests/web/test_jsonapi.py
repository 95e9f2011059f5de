"""The JSON API conventions (GET == POST, bodies on GET, gzip, JSON errors) over real HTTP."""
import gzip
import json
import time

import pytest
import requests

from pyme_desk.web.errors import HTTPError
from pyme_desk.web.jsonapi import JSONApp, blocking, json_body, param
from pyme_desk.web.service import BackgroundServer


def echo(request, body):
    return {"n": param(request, "n", int), "body": json_body(body, default=None)}


@blocking
def slow(request, body):
    time.sleep(0.05)
    return {"ok": True, "items": list(range(2000))}


def refuse(request, body):
    raise HTTPError(409, "nope")


@pytest.fixture
def api():
    srv = BackgroundServer(lambda: JSONApp({"echo": echo, "/slow": slow, "refuse": refuse}),
                           "127.0.0.1", 0, name="test api")
    port = srv.start()
    yield f"http://127.0.0.1:{port}"
    srv.stop()


def test_get_and_post_are_alike_and_get_takes_a_body(api):
    with requests.Session() as s:
        for method in ("GET", "POST"):
            r = s.request(method, api + "/echo?n=3", data=json.dumps({"a": 1}))
            assert r.status_code == 200 and r.json() == {"n": 3, "body": {"a": 1}}
        r = s.post(api + "/echo?n=1", data=gzip.compress(b'[1, 2]'), headers={"Content-Encoding": "gzip"})
        assert r.json()["body"] == [1, 2]


def test_large_responses_are_gzipped_for_clients_that_accept_it(api):
    r = requests.get(api + "/slow", timeout=5)
    assert r.headers.get("Content-Encoding") == "gzip" and len(r.json()["items"]) == 2000
    r = requests.get(api + "/slow", headers={"Accept-Encoding": "identity"}, timeout=5)
    assert "Content-Encoding" not in r.headers


def test_errors_are_json_4xx(api):
    with requests.Session() as s:
        assert s.get(api + "/echo").status_code == 400 and "n" in s.get(api + "/echo").json()["error"]
        assert s.get(api + "/echo?n=x").status_code == 400
        assert s.post(api + "/echo?n=1", data=b"{bad json").status_code == 400
        assert s.get(api + "/refuse").status_code == 409 and s.get(api + "/refuse").json() == {"error": "nope"}
        r = s.get(api + "/nowhere")
        assert r.status_code == 404 and "error" in r.json()


def test_port_in_use_is_a_usage_error():
    from pyme_desk.errors import UsageError

    first = BackgroundServer(lambda: JSONApp({}), "127.0.0.1", 0, name="first")
    port = first.start()
    try:
        with pytest.raises(UsageError, match="cannot listen"):
            BackgroundServer(lambda: JSONApp({}), "127.0.0.1", port, name="second").start()
    finally:
        first.stop()
