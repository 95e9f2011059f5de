"""Plain files, listings and bad input against a real data server on 127.0.0.1."""
import gzip
import os
import threading
import time

import pytest
import requests

from pyme_desk.storage.server import DataServer
from tests.storage.conftest import parse_responses, raw_exchange, status_lines


def test_put_get_head_round_trip(server, session, data_root):
    body = os.urandom(300_000)
    r = session.put(server.url + "a/b/c/frame00000.pzf", data=body)
    assert r.status_code == 200 and r.content == b""
    assert (data_root / "a/b/c/frame00000.pzf").read_bytes() == body
    r = session.get(server.url + "a/b/c/frame00000.pzf")
    assert r.status_code == 200 and r.content == body
    assert r.headers["Content-Length"] == str(len(body))
    h = session.head(server.url + "a/b/c/frame00000.pzf")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body)) and h.content == b""


def test_put_is_write_once_and_keeps_the_original(server, session, data_root):
    assert session.put(server.url + "x.txt", data=b"first").status_code == 200
    r = session.put(server.url + "x.txt", data=b"second")
    assert r.status_code == 405
    assert "exists" in r.json()["error"]
    assert (data_root / "x.txt").read_bytes() == b"first"
    # the connection is still usable after the refusal
    assert session.get(server.url + "x.txt").content == b"first"


def test_gzip_body_is_stored_decoded(server, session, data_root):
    payload = b"metadata " * 1000
    r = session.put(server.url + "s/metadata.json", data=gzip.compress(payload),
                    headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert (data_root / "s/metadata.json").read_bytes() == payload


def test_garbage_gzip_is_refused_and_nothing_written(server, session, data_root):
    r = session.put(server.url + "g/bad.bin", data=b"this is not gzip" * 100,
                    headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["error"]
    assert not (data_root / "g/bad.bin").exists()
    truncated = gzip.compress(os.urandom(5000))[:-20]
    r = session.put(server.url + "g/trunc.bin", data=truncated, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert not (data_root / "g/trunc.bin").exists()


def test_put_trailing_slash_creates_directory(server, session, data_root):
    assert session.put(server.url + "new/dir/").status_code == 200
    assert (data_root / "new/dir").is_dir()


def test_put_onto_a_directory_or_under_a_file_is_refused(server, session, data_root):
    session.put(server.url + "d/f.txt", data=b"1")
    r = session.put(server.url + "d", data=b"x")
    assert r.status_code == 405 and "directory" in r.json()["error"]
    r = session.put(server.url + "d/f.txt/child", data=b"x")
    assert r.status_code == 409
    assert (data_root / "d/f.txt").read_bytes() == b"1"


def test_listing_flags_and_sizes(server, session, data_root):
    for name in ("s1/metadata.json", "s1/frame00000.pzf", "s2/metadata.json", "s2/events.json",
                 "plain/readme.txt", "top.bin"):
        assert session.put(server.url + name, data=b"12345").status_code == 200
    listing = session.get(server.url).json()
    assert listing["s1/"] == [1 | 2, 2]
    assert listing["s2/"] == [1 | 2 | 4, 2]
    assert listing["plain/"] == [1, 1]
    assert listing["top.bin"] == [0, 5]
    assert ".pyme-desk-tmp/" not in listing
    assert session.get(server.url + "s1/").json() == {"frame00000.pzf": [0, 5], "metadata.json": [0, 5]}


def test_listing_follows_writes_at_once_and_sees_outside_changes(server, session, data_root):
    session.put(server.url + "ser/frame00000.pzf", data=b"a")
    assert session.get(server.url).json()["ser/"] == [1, 1]  # cached now
    session.put(server.url + "ser/metadata.json", data=b"{}")
    session.put(server.url + "ser/events.json", data=b"[]")
    assert session.get(server.url).json()["ser/"] == [7, 3]
    assert set(session.get(server.url + "ser/").json()) == {"frame00000.pzf", "metadata.json", "events.json"}
    time.sleep(0.01)
    (data_root / "ser" / "copied_in.txt").write_bytes(b"zz")  # not through the server
    assert "copied_in.txt" in session.get(server.url + "ser/").json()


def test_directory_without_slash_redirects(server, session):
    session.put(server.url + "dir/f", data=b"1")
    r = session.get(server.url + "dir", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/dir/"
    assert r.headers["Content-Length"] == "0"
    assert session.get(server.url + "dir").json() == {"f": [0, 1]}


def test_missing_file_is_json_404(server, session):
    r = session.get(server.url + "nope/missing.pzf")
    assert r.status_code == 404 and "not found" in r.json()["error"]


@pytest.mark.parametrize("path", [
    b"/../outside.txt", b"/a/../../outside.txt", b"/%2e%2e/outside.txt", b"/a/%2E%2E/%2e%2e/outside.txt",
    b"/..%2foutside.txt", b"/a\\..\\..\\outside.txt", b"/C:/outside.txt", b"/a/%00b", b"/%ff%fe.txt",
    b"/.pyme-desk-tmp/x",
])
def test_traversal_and_bad_names_are_refused(server, data_root, path):
    for method in (b"GET", b"PUT"):
        raw = raw_exchange(server.port, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
        code = status_lines(raw)[0]
        assert 400 <= code < 500, (method, path, raw[:200])
        assert b'"error"' in raw
    assert not (data_root.parent / "outside.txt").exists()
    assert sorted(p.name for p in data_root.iterdir()) == [".pyme-desk-tmp"]


def test_absolute_looking_paths_stay_inside_the_root(server, session, data_root):
    r = session.put(server.url + "/etc/passwd_copy", data=b"x")  # //etc/... is root-relative
    assert r.status_code == 200
    assert (data_root / "etc/passwd_copy").exists()


def test_symlink_pointing_out_is_refused(server, session, data_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    try:
        os.symlink(outside, data_root / "link", target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symlinks here")
    assert session.get(server.url + "link/secret.txt").status_code == 403
    assert session.put(server.url + "link/new.txt", data=b"x").status_code == 403
    assert not (outside / "new.txt").exists()


def test_huge_header_is_refused(server):
    raw = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert status_lines(raw)[0] == 431


def test_truncated_body_leaves_nothing(server, data_root):
    raw_exchange(server.port, b"PUT /t/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                 + b"x" * 5000, read_until_close=False)
    deadline = time.time() + 5
    while time.time() < deadline and any((data_root / ".pyme-desk-tmp").iterdir()):
        time.sleep(0.02)
    assert not (data_root / "t/cut.bin").exists()
    assert list((data_root / ".pyme-desk-tmp").iterdir()) == []


def test_wrong_content_length_is_an_error_not_a_file(server, data_root):
    # more bytes than announced: the surplus is not a valid request
    raw = raw_exchange(server.port, b"PUT /w/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
                       b"abcdefgh garbage\r\n\r\n")
    codes = status_lines(raw)
    assert codes[0] == 200 and codes[1] == 400
    assert (data_root / "w/a.bin").read_bytes() == b"abc"
    raw = raw_exchange(server.port, b"PUT /w/b.bin HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nabc")
    assert status_lines(raw)[0] == 400
    assert not (data_root / "w/b.bin").exists()


def test_pipelined_puts_on_one_socket(server, data_root):
    n = 60
    reqs = []
    for i in range(n):
        body = f"frame {i}".encode() * 100
        conn = b"close" if i == n - 1 else b"keep-alive"
        reqs.append(b"PUT /pipe/frame%05d.pzf HTTP/1.1\r\nHost: x\r\nConnection: %s\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (i, conn, len(body), body))
    raw = raw_exchange(server.port, b"".join(reqs))
    assert status_lines(raw) == [200] * n
    for i in range(n):
        assert (data_root / f"pipe/frame{i:05d}.pzf").read_bytes() == f"frame {i}".encode() * 100


def test_pipelined_gets_answer_in_order(server, session):
    for i in range(5):
        session.put(server.url + f"o/{i}.txt", data=str(i).encode() * (10 ** i))
    reqs = b"".join(b"GET /o/%d.txt HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in (4, 0, 3, 1, 2))
    raw = raw_exchange(server.port, reqs + b"GET /o/0.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = parse_responses(raw)
    assert [status for status, _ in responses] == [200] * 6
    assert [body for _, body in responses] == [str(i).encode() * (10 ** i) for i in (4, 0, 3, 1, 2, 0)]


def test_concurrent_puts_of_one_name_exactly_one_wins(server, data_root):
    results = []
    barrier = threading.Barrier(8)

    def put(i):
        barrier.wait()
        r = requests.put(server.url + "race/file.bin", data=bytes([i]) * 200_000, timeout=10)
        results.append((r.status_code, i))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for code, i in results if code == 200]
    assert len(winners) == 1 and sorted(c for c, _ in results) == [200] + [405] * 7
    assert (data_root / "race/file.bin").read_bytes() == bytes([winners[0]]) * 200_000


def test_unknown_method_is_405_json(server, session):
    r = session.delete(server.url + "x")
    assert r.status_code == 405 and "method" in r.json()["error"]


def test_token_is_required_when_configured(data_root, session):
    with DataServer(data_root, token="s3cret") as srv:
        r = session.put(srv.url + "a.txt", data=b"x")
        assert r.status_code == 401 and "token" in r.json()["error"]
        r = session.put(srv.url + "__aggregate_txt/log.txt", data=b"x")
        assert r.status_code == 401
        r = session.put(srv.url + "a.txt", data=b"x", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert not (data_root / "a.txt").exists()
        r = session.put(srv.url + "a.txt", data=b"x", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert session.get(srv.url + "a.txt").content == b"x"  # reads stay open


def test_off_loopback_without_token_refuses_to_start(data_root):
    from pyme_desk.errors import UsageError

    with pytest.raises(UsageError, match="token"):
        DataServer(data_root, bind="0.0.0.0")


def test_range_requests(server, session):
    body = bytes(range(256)) * 2000  # 512000 bytes: over the small-file limit
    session.put(server.url + "r/big.bin", data=body)
    session.put(server.url + "r/small.bin", data=body[:1000])
    r = session.get(server.url + "r/big.bin", headers={"Range": "bytes=1000-299999"})
    assert r.status_code == 206 and r.content == body[1000:300000]
    assert r.headers["Content-Range"] == f"bytes 1000-299999/{len(body)}"
    r = session.get(server.url + "r/small.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == body[990:1000]
    r = session.get(server.url + "r/small.bin", headers={"Range": "bytes=900-"})
    assert r.status_code == 206 and r.content == body[900:1000]
    assert session.get(server.url + "r/small.bin", headers={"Range": "bytes=5000-"}).status_code == 416
    r = session.get(server.url + "r/small.bin", headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == body[:1000]  # several ranges: whole file
