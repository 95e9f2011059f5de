"""The WebDAV share through a real WebDAV client library (webdav4) against real servers."""
import io
import time

import httpx
import pytest
from webdav4.client import Client, HTTPError, ResourceNotFound

from tests.webdav.conftest import PASSWORD, TOKEN, USER, cluster_client


def dav_client(dav, auth=(USER, PASSWORD)):
    return Client(dav.url, auth=auth, retry=False, timeout=30)


def read(client, path):
    buf = io.BytesIO()
    client.download_fileobj(path, buf)
    return buf.getvalue()


@pytest.fixture
def populated(data_servers):
    """Files spread over both servers: a series on each, an .h5r result and a plain file."""
    a, b = data_servers
    with cluster_client([a.url]) as ca, cluster_client([b.url]) as cb:
        ca.put_files([("2024/cell_1/metadata.json", b"{}"), ("2024/cell_1/frame00000.pzf", b"A" * 100),
                      ("2024/cell_1/events.json", b"[]")])
        cb.put_files([("2024/cell_1/frame00001.pzf", b"B" * 200), ("2024/cell_2/metadata.json", b"{}")])
        ca.put_file("results/run.h5r", b"\x89HDF fake results")
        cb.put_file("notes.txt", b"hello from b")
    return data_servers


def test_propfind_depth_1_merges_both_servers(populated, make_dav):
    client = dav_client(make_dav())
    assert sorted(client.ls("", detail=False)) == ["2024", "notes.txt", "results"]
    entries = {e["display_name"]: e for e in client.ls("2024/cell_1", detail=True)}
    assert set(entries) == {"metadata.json", "frame00000.pzf", "frame00001.pzf", "events.json"}
    assert entries["frame00001.pzf"]["content_length"] == 200 and entries["frame00001.pzf"]["type"] == "file"
    series = {e["display_name"]: e["type"] for e in client.ls("2024", detail=True)}
    assert series == {"cell_1": "directory", "cell_2": "directory"}
    [h5r] = client.ls("results", detail=True)
    assert h5r["type"] == "file" and h5r["content_length"] == len(b"\x89HDF fake results")


def test_get_streams_from_the_server_holding_the_file(populated, make_dav):
    client = dav_client(make_dav())
    assert read(client, "notes.txt") == b"hello from b"
    assert read(client, "2024/cell_1/frame00000.pzf") == b"A" * 100
    with pytest.raises(ResourceNotFound):
        read(client, "no/such/file")


def test_put_stores_a_new_file_on_one_data_server(data_servers, make_dav):
    dav = make_dav()
    client = dav_client(dav)
    client.mkdir("up")
    client.upload_fileobj(io.BytesIO(b"new data"), "up/load.bin")
    assert client.exists("up/load.bin") and read(client, "up/load.bin") == b"new data"
    holders = [s for s in data_servers if (s.root.path / "up/load.bin").is_file()]
    assert len(holders) == 1 and (holders[0].root.path / "up/load.bin").read_bytes() == b"new data"
    with cluster_client([s.url for s in data_servers]) as c:
        assert c.get_file("up/load.bin") == b"new data"


def test_put_of_unknown_length_is_spooled_then_stored(data_servers, make_dav):
    dav = make_dav()
    body = (bytes([i]) * 1000 for i in range(50))  # a generator: chunked transfer encoding
    r = httpx.put(dav.url + "chunked.bin", content=body, auth=(USER, PASSWORD))
    assert r.status_code == 201
    assert read(dav_client(dav), "chunked.bin") == b"".join(bytes([i]) * 1000 for i in range(50))


def test_mkcol_creates_a_directory(data_servers, make_dav):
    client = dav_client(make_dav())
    client.mkdir("newdir")
    assert client.isdir("newdir")
    assert any((s.root.path / "newdir").is_dir() for s in data_servers)
    client.upload_fileobj(io.BytesIO(b"x"), "newdir/inside.txt")
    assert client.ls("newdir", detail=False) == ["newdir/inside.txt"]


def test_overwrite_is_refused_with_an_explanation(populated, make_dav):
    dav = make_dav()
    r = httpx.put(dav.url + "notes.txt", content=b"changed", auth=(USER, PASSWORD))
    assert r.status_code == 403 and "write-once" in r.text and "notes.txt" in r.text
    for method in ("DELETE", "MOVE"):
        r = httpx.request(method, dav.url + "notes.txt", auth=(USER, PASSWORD),
                          headers={"Destination": dav.url + "renamed.txt"})
        assert r.status_code == 403 and "write-once" in r.text, method
    client = dav_client(dav)
    with pytest.raises(HTTPError):
        client.upload_fileobj(io.BytesIO(b"changed"), "notes.txt", overwrite=True)
    assert read(client, "notes.txt") == b"hello from b"
    assert (populated[1].root.path / "notes.txt").read_bytes() == b"hello from b"


def test_authentication(populated, make_dav):
    dav = make_dav(token=TOKEN)
    no_credentials = httpx.request("PROPFIND", dav.url, headers={"Depth": "1"})
    assert no_credentials.status_code == 401 and "Basic" in no_credentials.headers["WWW-Authenticate"]
    assert "Digest" not in no_credentials.headers["WWW-Authenticate"]
    for auth in [(USER, "wrong password"), ("mallory", PASSWORD), ("cluster", "not the token"), ("", "")]:
        with pytest.raises(HTTPError) as e:
            dav_client(dav, auth).ls("")
        assert e.value.response.status_code == 401
    assert dav_client(dav, ("cluster", TOKEN)).exists("notes.txt")
    assert dav_client(dav).exists("notes.txt")


def test_read_only_share_refuses_writes(populated, make_dav):
    dav = make_dav(read_only=True)
    client = dav_client(dav)
    assert read(client, "notes.txt") == b"hello from b"
    for method, path in [("PUT", "new.txt"), ("MKCOL", "newdir"), ("PUT", "notes.txt"), ("DELETE", "notes.txt")]:
        r = httpx.request(method, dav.url + path, content=b"x", auth=(USER, PASSWORD))
        assert r.status_code == 403 and "read-only" in r.text, (method, path, r.status_code)
    assert not any((s.root.path / "new.txt").exists() or (s.root.path / "newdir").exists() for s in populated)


def test_empty_put_then_content_as_windows_explorer_does(data_servers, make_dav):
    dav = make_dav(placeholder_s=0.5)
    auth = (USER, PASSWORD)
    assert httpx.put(dav.url + "explorer.txt", content=b"", auth=auth).status_code == 201
    assert dav_client(dav).ls("", detail=False) == ["explorer.txt"]
    assert not any((s.root.path / "explorer.txt").exists() for s in data_servers)  # held, not stored
    assert httpx.put(dav.url + "explorer.txt", content=b"the content", auth=auth).status_code in (201, 204)
    assert read(dav_client(dav), "explorer.txt") == b"the content"
    # an empty file whose content never comes is stored empty once the placeholder time is up
    assert httpx.put(dav.url + "really_empty.txt", content=b"", auth=auth).status_code == 201
    time.sleep(0.6)
    assert dav_client(dav).exists("really_empty.txt")
    assert [s for s in data_servers if (s.root.path / "really_empty.txt").is_file()]


def test_names_the_cluster_cannot_store_are_refused(make_dav):
    r = httpx.put(make_dav().url + "with%20space.txt", content=b"x", auth=(USER, PASSWORD))
    assert r.status_code == 403 and "not allowed" in r.text


def test_non_loopback_bind_without_tls_is_refused(data_servers, users_file):
    from pyme_desk.errors import UsageError
    from pyme_desk.webdav.server import WebDAVServer

    with pytest.raises(UsageError, match="TLS"):
        WebDAVServer(cluster_client([data_servers[0].url]), bind="0.0.0.0", users_file=users_file)


def test_no_users_and_no_token_is_refused(data_servers):
    from pyme_desk.errors import UsageError
    from pyme_desk.webdav.server import WebDAVServer

    with pytest.raises(UsageError, match="users"):
        WebDAVServer(cluster_client([data_servers[0].url]))
