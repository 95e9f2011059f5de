"""The data server's listing cache stays true while our writes race its rescans."""
import json
import os

from pyme_desk.storage import listing
from pyme_desk.storage.listing import ListingCache


def names(body: bytes) -> set[str]:
    return set(json.loads(body))


def test_a_write_during_a_rescan_is_not_lost_to_a_coarse_directory_time(tmp_path, monkeypatch):
    """Directory times are coarse: a file renamed in just after a scan read the directory can
    leave the mtime unchanged.  The scan must still not store a listing without that file, or
    every later write would keep the stale listing looking current."""
    series = tmp_path / "series"
    series.mkdir()
    (series / "frame00000.pzf").write_bytes(b"0")
    cache = ListingCache()
    real_scan = listing.scan_directory
    late = series / "frame00001.pzf"

    def scan_then_a_write_lands(path, is_aggregating):
        entries = real_scan(path, is_aggregating)  # read before the write ...
        before = os.stat(series).st_mtime_ns
        late.write_bytes(b"1")  # ... which lands now, within the same directory time tick
        os.utime(series, ns=(before, before))
        cache.file_added(late)
        return entries

    monkeypatch.setattr(listing, "scan_directory", scan_then_a_write_lands)
    assert names(cache.scan(series)) == {"frame00000.pzf", "frame00001.pzf"}
    monkeypatch.setattr(listing, "scan_directory", real_scan)
    (series / "frame00002.pzf").write_bytes(b"2")
    cache.file_added(series / "frame00002.pzf")
    assert names(cache.listing(series)) == {"frame00000.pzf", "frame00001.pzf", "frame00002.pzf"}
    assert names(cache.listing(series, first_frame=1)) == {"frame00001.pzf", "frame00002.pzf"}


def test_a_series_completed_during_a_rescan_of_its_parent_is_rescanned(tmp_path, monkeypatch):
    day = tmp_path / "day"
    (day / "s").mkdir(parents=True)
    (day / "s" / "metadata.json").write_bytes(b"{}")
    cache = ListingCache()
    real_scan = listing.scan_directory

    def scan_then_the_series_completes(path, is_aggregating):
        entries = real_scan(path, is_aggregating)
        (day / "s" / "events.json").write_bytes(b"[]")
        cache.file_added(day / "s" / "events.json")
        return entries

    monkeypatch.setattr(listing, "scan_directory", scan_then_the_series_completes)
    assert json.loads(cache.scan(day))["s/"][0] == 1 | 2  # what the scan saw, served once
    monkeypatch.setattr(listing, "scan_directory", real_scan)
    assert json.loads(cache.listing(day))["s/"] == [1 | 2 | 4, 2]  # then rescanned: complete
