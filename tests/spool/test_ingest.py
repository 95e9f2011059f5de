"""TIFF ingest and ``pyme-desk spool``: stacks, folders, watched folders, bad files, the CLI."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pyme_desk.cli import main
from pyme_desk.cluster import ClusterClient
from pyme_desk.formats.series import open_series
from pyme_desk.spool.ingest import FolderWatcher, IngestError, scan_tiffs, stack_frames, tiff_metadata
from pyme_desk.storage.server import DataServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(data_root):
    with DataServer(data_root, server_filter="ingest") as srv:
        yield srv


def stack(n: int, seed: int = 0, shape=(20, 30)) -> np.ndarray:
    """``n`` frames as tifffile stores them: (pages, rows, columns)."""
    return np.random.default_rng(seed).integers(0, 4000, (n, *shape)).astype(np.uint16)


def write(path: Path, pages: np.ndarray, **options) -> None:
    """A greyscale stack, one page per frame (never read as RGB planes)."""
    tifffile.imwrite(path, pages, photometric="minisblack", **options)


def read_back(url: str, series: str):
    client = ClusterClient([url], server_filter="ingest", token="", listing_cache_s=0.0)
    return client, open_series(series, client)


def test_a_multipage_tiff_is_one_series_with_its_pixel_size(server, tmp_path, capsys):
    pages = stack(12)
    path = tmp_path / "cells.tif"
    write(path, pages, resolution=(1 / 0.107, 1 / 0.107), imagej=True,
                     metadata={"unit": "um", "finterval": 0.02})
    (info,) = scan_tiffs(path)
    assert (info.frames, info.shape, info.dtype) == (12, (30, 20), np.uint16)
    md = tiff_metadata(path)
    assert md["voxelsize.x"] == pytest.approx(0.107, rel=1e-5) and md["Camera.CycleTime"] == 0.02
    assert "voxelsize.x" not in md["Spool.DefaultedKeys"] and "Camera.ADOffset" in md["Spool.DefaultedKeys"]

    code = main(["spool", str(path), "--series", "u/cells", "--server", server.url, "--filter", "ingest",
                 "--meta", "Camera.ADOffset=100", "--chunk", "5"])
    assert code == 0
    assert "spooled 12 frames to PYME-CLUSTER://ingest/u/cells" in capsys.readouterr().out
    client, series = read_back(server.url, "u/cells")
    with client:
        assert series.is_complete and len(series) == 12
        for i in (0, 11):
            np.testing.assert_array_equal(series[i], pages[i].T)  # PYME frames are [x, y]
        assert series.metadata["Camera.ADOffset"] == 100
        assert series.metadata["voxelsize.x"] == pytest.approx(0.107, rel=1e-5)


def test_pixel_size_from_ome_and_resolution_tags(tmp_path):
    ome = tmp_path / "x.ome.tif"
    tifffile.imwrite(ome, stack(2), ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 65.0,
                                                        "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.066})
    md = tiff_metadata(ome)
    assert (md["voxelsize.x"], md["voxelsize.y"]) == (pytest.approx(0.065), pytest.approx(0.066))
    cm = tmp_path / "cm.tif"
    write(cm, stack(1), resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    assert tiff_metadata(cm)["voxelsize.x"] == pytest.approx(0.5)
    bare = tmp_path / "bare.tif"
    write(bare, stack(1))
    md = tiff_metadata(bare)
    assert md["voxelsize.x"] == 0.1 and "voxelsize.x" in md["Spool.DefaultedKeys"]


def test_a_folder_of_tiffs_is_spooled_in_natural_order(server, tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    parts = {name: stack(3, seed=k) for k, name in enumerate(["img10.tif", "img2.tif", "img1.tiff"])}
    for name, pages in parts.items():
        write(folder / name, pages)
    (folder / "notes.txt").write_text("not an image")
    assert [s.path.name for s in scan_tiffs(folder)] == ["img1.tiff", "img2.tif", "img10.tif"]
    expected = np.concatenate([parts["img1.tiff"], parts["img2.tif"], parts["img10.tif"]])
    assert main(["spool", str(folder), "--series", "u/folder", "--server", server.url, "--compression", "raw"]) == 0
    client, series = read_back(server.url, "u/folder")
    with client:
        assert len(series) == 9
        np.testing.assert_array_equal(series[:], expected.transpose(0, 2, 1))


def test_bad_tiffs_stop_before_anything_is_spooled(server, tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\xff" * 50)
    assert main(["spool", str(bad), "--series", "u/bad", "--server", server.url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyme-desk spool: error:") and "broken.tif" in err and len(err.splitlines()) == 1
    assert not (server.root.path / "u/bad").exists()

    folder = tmp_path / "mixed"
    folder.mkdir()
    write(folder / "a.tif", stack(2))
    write(folder / "b.tif", stack(2, shape=(8, 8)))
    with pytest.raises(IngestError, match="one frame size"):
        scan_tiffs(folder)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(IngestError, match="single-channel"):
        scan_tiffs(rgb)
    with pytest.raises(IngestError, match="no such file"):
        scan_tiffs(tmp_path / "missing.tif")


def test_unreachable_server_is_one_line_and_exit_2(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "x.tif"
    write(path, stack(1))
    assert main(["spool", str(path), "--series", "u/x", "--server", f"http://127.0.0.1:{port}/"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyme-desk spool: error:") and len(err.splitlines()) == 1


def test_wider_pixel_types_are_converted_or_refused(tmp_path):
    ok = tmp_path / "int16.tif"
    write(ok, np.full((2, 4, 4), 7, np.int16))
    (frame, _) = list(stack_frames(scan_tiffs(ok)))
    assert frame.dtype == np.uint16 and frame[0, 0] == 7
    doubles = tmp_path / "f64.tif"
    write(doubles, np.full((1, 4, 4), 0.5))
    assert next(stack_frames(scan_tiffs(doubles))).dtype == np.float32
    negative = tmp_path / "neg.tif"
    write(negative, np.full((1, 4, 4), -3, np.int16))
    with pytest.raises(IngestError, match="outside 0..65535"):
        list(stack_frames(scan_tiffs(negative)))


def test_folder_watcher_follows_files_as_they_are_written(tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()
    first, second = stack(3, seed=1), stack(4, seed=2)
    watcher = FolderWatcher(folder, poll=0.05)
    got = []

    def consume():
        got.extend(watcher.frames())

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        with tifffile.TiffWriter(folder / "a_001.tif") as tif:  # a stack that grows page by page
            for page in first:
                tif.write(page, contiguous=False)
                time.sleep(0.02)
        write(folder / "a_002.tif", second)
        deadline = time.monotonic() + 5
        while len(got) < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(got) == 7
        (folder / ".done").touch()
        reader.join(5)
        assert not reader.is_alive()
    finally:
        watcher.stop()
        reader.join(5)
    np.testing.assert_array_equal(np.stack(got), np.concatenate([first, second]).transpose(0, 2, 1))
    assert watcher.first_file == folder / "a_001.tif"


def test_folder_watcher_stops_when_idle_and_refuses_a_bad_file(tmp_path):
    folder = tmp_path / "idle"
    folder.mkdir()
    write(folder / "1.tif", stack(2))
    started = time.monotonic()
    assert len(list(FolderWatcher(folder, poll=0.05, idle_timeout=0.3).frames())) == 2
    assert time.monotonic() - started < 3
    (folder / "2.tif").write_bytes(b"garbage, not a tiff")
    write(folder / "3.tif", stack(1))
    with pytest.raises(IngestError, match="2.tif"):
        list(FolderWatcher(folder, poll=0.05, idle_timeout=0.3).frames())


def test_cli_watch_mode_in_a_subprocess(server, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pyme_desk", "spool", str(folder), "--series", "u/watched",
                             "--server", server.url, "--watch", "--poll", "0.05", "--chunk", "2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().startswith("watching"), "the watcher did not start"
        written = []
        for k in range(3):
            pages = stack(2, seed=10 + k)
            write(folder / f"frame_{k}.tif", pages)
            written.append(pages)
            time.sleep(0.1)
        (folder / ".done").touch()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "spooled 6 frames" in out
    client, series = read_back(server.url, "u/watched")
    with client:
        assert series.is_complete
        np.testing.assert_array_equal(series[:], np.concatenate(written).transpose(0, 2, 1))
