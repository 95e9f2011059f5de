"""Special endpoints over HTTP: __status, __glob, __aggregate_*, .h5/ and .h5r/ read-back, MirrorSource."""
import gzip
import io
import json
import os
import pickle
import threading
import time

import numpy as np
import pytest
import requests
import tables

from pyme_desk.formats import pzf
from pyme_desk.storage.server import DataServer

FIT_DTYPE = np.dtype([("tIndex", "<i4"),
                      ("fitResults", [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4")]),
                      ("fitError", [("A", "<f4"), ("x0", "<f4"), ("y0", "<f4")]),
                      ("resultCode", "<i4")])


def fit_rows(n, t):
    rows = np.zeros(n, FIT_DTYPE)
    rows["tIndex"] = t
    rows["fitResults"]["x0"] = np.arange(n) + 1000 * t
    return rows


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_status_has_pyme_keys_and_is_fast(server, session):
    doc = session.get(server.url + "__status").json()
    for key in ("IPAddress", "BindAddress", "Port", "Protocol", "TestMode", "ComputerName", "Disk",
                "Uptime", "CPUUsage", "MemUsage", "Network"):
        assert key in doc, key
    assert doc["Port"] == server.port and doc["Disk"]["total"] > 0
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        assert session.get(server.url + "__status").status_code == 200
        times.append(time.perf_counter() - t0)
    assert sorted(times)[len(times) // 2] < 0.010


def test_glob_is_confined_to_the_root(server, session, data_root, tmp_path):
    for name in ("a/s1/metadata.json", "a/s2/metadata.json", "b/x.txt"):
        session.put(server.url + name, data=b"{}")
    r = session.get(server.url + "__glob", params={"pattern": "a/*/metadata.json"})
    assert r.status_code == 200 and r.json() == ["a/s1/metadata.json", "a/s2/metadata.json"]
    assert session.get(server.url + "__glob", params={"pattern": "*"}).json() == ["a", "b"]
    for bad in ("/etc/*", "../*", "a/../../*", "~/*", "C:/*"):
        r = session.get(server.url + "__glob", params={"pattern": bad})
        assert r.status_code == 400 and "error" in r.json(), bad
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    try:
        os.symlink(outside, data_root / "link", target_is_directory=True)
    except OSError:
        pytest.skip("no symlinks")
    assert session.get(server.url + "__glob", params={"pattern": "link/*"}).json() == []


def test_aggregate_txt_appends(server, session, data_root):
    for i in range(5):
        assert session.put(server.url + "__aggregate_txt/LOGS/rules/r1.log", data=f"line {i}\n").status_code == 200
    assert (data_root / "LOGS/rules/r1.log").read_text() == "".join(f"line {i}\n" for i in range(5))
    assert session.get(server.url + "LOGS/rules/").json()["r1.log"][1] == 35


def test_aggregate_h5r_from_8_concurrent_writers(server, data_root):
    url = server.url + "__aggregate_h5r/ser/analysis/ser.h5r/FitResults"
    errors = []

    def writer(w):
        with requests.Session() as s:
            for k in range(10):
                t = w * 100 + k
                body = pickle.dumps(fit_rows(20, t), protocol=2) if k % 2 else npy_bytes(fit_rows(20, t))
                r = s.put(url, data=gzip.compress(body), headers={"Content-Encoding": "gzip"}, timeout=30)
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    r = requests.get(server.url + "ser/analysis/ser.h5r/FitResults.npy", timeout=10)
    assert r.status_code == 200
    rows = np.load(io.BytesIO(r.content))
    assert len(rows) == 8 * 10 * 20
    assert sorted(set(rows["tIndex"].tolist())) == sorted(w * 100 + k for w in range(8) for k in range(10))
    server.h5r.close()
    with tables.open_file(data_root / "ser/analysis/ser.h5r") as h5:
        assert h5.root.FitResults.nrows == 1600


def test_h5r_metadata_events_and_formats(server, session):
    base = server.url + "__aggregate_h5r/r/res.h5r/"
    assert session.put(base + "MetaData", data=json.dumps({"Camera.ADOffset": 100, "voxelsize.x": 0.1})).status_code == 200
    assert session.put(base + "FitResults", data=npy_bytes(fit_rows(3, 7))).status_code == 200
    assert session.put(base + "Events", data=json.dumps([["StartAq", "0", 1.5]])).status_code == 200
    md = session.get(server.url + "r/res.h5r/Metadata.json").json()
    assert md["Camera.ADOffset"] == 100
    cols = session.get(server.url + "r/res.h5r/FitResults.json").json()
    assert cols["fitResults.x0"] == {"0": 7000.0, "1": 7001.0, "2": 7002.0}
    csv = session.get(server.url + "r/res.h5r/FitResults.csv", params={"from": 1, "to": 3}).text
    assert len(csv.strip().splitlines()) == 3
    r = session.get(server.url + "r/res.h5r/FitResults")
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert len(pickle.loads(r.content)) == 3
    assert session.get(server.url + "r/res.h5r/Nope.json").status_code == 404
    assert session.get(server.url + "r/missing.h5r/FitResults.json").status_code == 404


def test_garbage_and_hostile_aggregate_bodies_are_refused(server, session, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    url = server.url + "__aggregate_h5r/e/e.h5r/FitResults"
    for body in (pickle.dumps(Evil()), b"\x80\x04garbage", b"not json at all", b"", b"\x00" * 100):
        r = session.put(url, data=body)
        assert r.status_code == 400, body[:20]
        assert "error" in r.json()
    assert not marker.exists()
    r = session.put(server.url + "__aggregate_h5r/e/e.h5r", data=pickle.dumps({"a": 1}))
    assert r.status_code == 400 and "legacy" in r.json()["error"]
    r = session.put(server.url + "__aggregate_h5r/e/e.h5r/FitResults", data=b"\x1f\x8b garbage",
                    headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400


def test_aggregate_h5_series_round_trip(server, session, data_root):
    base = server.url + "__aggregate_h5/h/ser.h5/"
    assert session.put(base + "metadata.json", data=json.dumps({"imageID": 3})).status_code == 200
    frames = {i: pzf.encode(np.full((16, 8), i, np.uint16), frame_num=i) for i in range(3)}
    for i in (2, 0, 1):
        assert session.put(base + f"frame{i:05d}.pzf", data=frames[i]).status_code == 200
    listing = session.get(server.url + "h/ser.h5/").json()
    assert set(listing) == {"metadata.json", "frame00000.pzf", "frame00001.pzf", "frame00002.pzf"}
    blob = session.get(server.url + "h/ser.h5/frame00001.pzf").content
    assert blob == frames[1] and (pzf.decode(blob) == 1).all()
    assert session.put(base + "frame00003.pzf", data=b"not a pzf frame at all, sorry").status_code == 400
    assert session.get(server.url + "h/ser.h5/metadata.json").json()["imageID"] == 3
    assert session.put(base + "events.json", data=json.dumps([["StartAq", "0", 1.0]])).status_code == 200
    assert session.get(server.url + "h/ser.h5/events.json").json() == [["StartAq", "0", 1.0]]
    assert session.get(server.url + "h/ser.h5/frame00009.pzf").status_code == 404
    assert session.get(server.url + "h/").json()["ser.h5"][0] & 2


def test_mirror_source_copies_from_another_server(server, session, tmp_path):
    other_root = tmp_path / "other"
    with DataServer(other_root) as other:
        payload = os.urandom(3_000_000)
        session.put(other.url + "m/big.bin", data=payload)
        r = session.put(server.url + "m/big.bin", params={"MirrorSource": other.url + "m/big.bin"})
        assert r.status_code == 200
        assert session.get(server.url + "m/big.bin").content == payload
        r = session.put(server.url + "m/none.bin", params={"MirrorSource": other.url + "m/none.bin"})
        assert r.status_code == 502
        assert session.get(server.url + "m/none.bin").status_code == 404


def test_under_load_nothing_fails_and_status_stays_fast(server, data_root):
    """One spooler PUTs 8 MiB frames, 4 readers GET, 2 pollers list and ask __status."""
    frame = os.urandom(8 << 20)
    stop = threading.Event()
    failures = []
    status_times = []
    with requests.Session() as s:
        for i in range(4):
            s.put(server.url + f"load/seed{i}.bin", data=frame[: 1 << 20])

    def spool():
        with requests.Session() as s:
            i = 0
            while not stop.is_set() and i < 40:
                r = s.put(server.url + f"load/frame{i:05d}.pzf", data=frame, timeout=10)
                if r.status_code != 200:
                    failures.append(("put", r.status_code))
                i += 1

    def read(k):
        with requests.Session() as s:
            while not stop.is_set():
                r = s.get(server.url + f"load/seed{k}.bin", timeout=10)
                if r.status_code != 200 or len(r.content) != 1 << 20:
                    failures.append(("get", r.status_code))

    def poll():
        with requests.Session() as s:
            while not stop.is_set():
                if s.get(server.url + "load/", timeout=10).status_code != 200:
                    failures.append(("list", None))
                t0 = time.perf_counter()
                r = s.get(server.url + "__status", timeout=10)
                status_times.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures.append(("status", r.status_code))
                time.sleep(0.02)

    threads = [threading.Thread(target=spool)] + [threading.Thread(target=read, args=(k,)) for k in range(4)] \
        + [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    threads[0].join(60)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(list((data_root / "load").glob("frame*.pzf"))) == 40
    status_times.sort()
    # the server shares 2 cores with 7 busy client threads here; the median is what a user sees
    assert status_times[len(status_times) // 2] < 0.05


def test_status_lists_files_open_for_append(server, session):
    session.put(server.url + "__aggregate_h5r/o/open.h5r/FitResults", data=npy_bytes(fit_rows(2, 1)))
    deadline = time.time() + 5
    while time.time() < deadline:
        doc = session.get(server.url + "__status").json()
        if doc["Desk"].get("OpenForAppend"):
            break
        time.sleep(0.05)
    assert doc["Desk"]["OpenForAppend"] == ["o/open.h5r"]
    server.h5r.close()
    deadline = time.time() + 5
    while time.time() < deadline and session.get(server.url + "__status").json()["Desk"]["OpenForAppend"]:
        time.sleep(0.05)
    assert session.get(server.url + "__status").json()["Desk"]["OpenForAppend"] == []


def test_first_frame_listing_leaves_out_the_older_frames(server, session, data_root):
    series = data_root / "follow" / "s1"
    series.mkdir(parents=True)
    for name in ["metadata.json", "frame00000.pzf", "frame00001.pzf", "frame00002.pzf",
                 "frame99999.pzf", "frame100000.pzf", "frames.txt", "frame1.pzf"]:
        (series / name).write_bytes(b"x")
    full = session.get(server.url + "follow/s1/").json()
    assert len(full) == 8
    # frame1.pzf is not a frame name (frames have at least five digits): it is always listed
    assert set(session.get(server.url + "follow/s1/?first_frame=2").json()) == {
        "metadata.json", "frame00002.pzf", "frame99999.pzf", "frame100000.pzf", "frames.txt", "frame1.pzf"}
    # frame 100000 has six digits: it must not sort below frame 99999
    assert set(session.get(server.url + "follow/s1/?first_frame=100000").json()) == {
        "metadata.json", "frame100000.pzf", "frames.txt", "frame1.pzf"}
    assert session.get(server.url + "follow/s1/?first_frame=0").json() == full
    session.put(server.url + "follow/s1/frame00003.pzf", data=b"y")  # a write updates the cache
    assert "frame00003.pzf" in session.get(server.url + "follow/s1/?first_frame=3").json()
    for bad in ("-1", "x", "1.5", "%D9%A1"):
        r = session.get(server.url + f"follow/s1/?first_frame={bad}")
        assert r.status_code == 400 and "first_frame" in r.json()["error"]


def test_first_frame_listing_of_a_packed_h5_series(server, session):
    base = server.url + "__aggregate_h5/h/packed.h5/"
    assert session.put(base + "metadata.json", data=json.dumps({"imageID": 4})).status_code == 200
    for i in range(4):
        blob = pzf.encode(np.full((8, 8), i, np.uint16), frame_num=i)
        assert session.put(base + f"frame{i:05d}.pzf", data=blob).status_code == 200
    assert set(session.get(server.url + "h/packed.h5/?first_frame=3").json()) == {
        "metadata.json", "frame00003.pzf"}
