"""Reading one server's listing and merging several (protocol.md §2.4)."""
import json

import pytest

from pyme_desk.cluster.listing import Entry, ListingFormatError, merge_listings, parse_listing


def test_parse_listing_reads_the_wire_shape():
    body = json.dumps({"frame00000.pzf": [0, 123], "sub/": [1, 5], "s/": [7, 9], "x.h5": [6, 99]})
    listing = parse_listing(body.encode())
    assert listing["sub/"] == Entry(1, 5) and listing["sub/"].is_dir and not listing["sub/"].is_series
    assert listing["s/"].is_series and listing["s/"].is_complete
    assert not listing["frame00000.pzf"].is_dir
    assert listing["x.h5"].is_series and listing["x.h5"].is_dir  # PYME clients test type > 0


@pytest.mark.parametrize("body", [b"<html>", b"[\"a/\"]", b'{"a": 3}', b'{"a": [0]}', b'{"a": ["x", 1]}'])
def test_parse_listing_refuses_other_shapes(body):
    with pytest.raises(ListingFormatError):
        parse_listing(body)


def test_merge_ors_types_sums_dir_sizes_and_sorts_names():
    a = {"series/": Entry(3, 2), "b.txt": Entry(0, 10), "only_a/": Entry(1, 1)}
    b = {"series/": Entry(5, 4), "b.txt": Entry(0, 12), "a.txt": Entry(0, 1)}
    merged = merge_listings([a, b])
    assert list(merged) == ["a.txt", "b.txt", "only_a/", "series/"]
    assert merged["series/"] == Entry(7, 6)
    assert merged["b.txt"] == Entry(0, 12)  # file sizes: last server wins
    assert merged["only_a/"] == Entry(1, 1)


def test_merge_of_pyme_quirk_flags_still_reads_as_directory():
    # PYME's incremental cache may drop the DIRECTORY bit on a series directory.
    merged = merge_listings([{"s/": Entry(2, 3)}, {"s/": Entry(4, 1)}])
    assert merged["s/"] == Entry(6, 4) and merged["s/"].is_dir and merged["s/"].is_complete


def test_merge_of_nothing_is_empty():
    assert merge_listings([]) == {}
