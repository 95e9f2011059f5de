"""The directory-listing wire format as a client reads it, and the merge across servers.

A data server answers ``GET /<dir>/`` with a JSON object ``{name: [type, size]}`` (protocol.md
§2.4): directory names end in ``/``, ``type`` is a bit field (DIRECTORY, SERIES,
SERIES_COMPLETE) and ``size`` is bytes for files and an entry count for directories.  A
cluster-wide listing merges the per-server ones: type bits are OR-ed, directory counts are
summed, and for files the last server's size is kept.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping

# The type bits are defined once, next to the server's listing code.
from pyme_desk.storage.listing import (FILETYPE_DIRECTORY, FILETYPE_NORMAL, FILETYPE_SERIES,
                                       FILETYPE_SERIES_COMPLETE, frame_index, frame_name, frames_from)

__all__ = ["FILETYPE_NORMAL", "FILETYPE_DIRECTORY", "FILETYPE_SERIES", "FILETYPE_SERIES_COMPLETE",
           "Entry", "Listing", "ListingFormatError", "parse_listing", "merge_listings", "frames_from",
           "frame_index", "frame_name"]


class ListingFormatError(ValueError):
    """A server's listing body is not a JSON object of ``name: [type, size]`` pairs."""


@dataclass(frozen=True)
class Entry:
    """One name in a listing: its type bits and its size (bytes, or entry count for dirs)."""

    type: int
    size: int

    @property
    def is_dir(self) -> bool:
        # PYME's servers sometimes drop the DIRECTORY bit on series dirs, so any bit means "dir".
        return self.type > 0

    @property
    def is_series(self) -> bool:
        return bool(self.type & FILETYPE_SERIES)

    @property
    def is_complete(self) -> bool:
        return bool(self.type & FILETYPE_SERIES_COMPLETE)


Listing = dict[str, Entry]


def parse_listing(body: bytes | str) -> Listing:
    """Decode one server's listing body; raise ListingFormatError if it is not the §2.4 shape."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ListingFormatError(f"listing is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ListingFormatError(f"listing must be a JSON object, not {type(data).__name__}")
    listing: Listing = {}
    for name, value in data.items():
        try:
            type_bits, size = value
            listing[name] = Entry(int(type_bits), int(size))
        except (TypeError, ValueError):
            raise ListingFormatError(f"listing entry {name!r} is not [type, size]: {value!r}") from None
    return listing


def merge_listings(listings: Iterable[Mapping[str, Entry]]) -> Listing:
    """One cluster-wide listing, names sorted: types OR-ed, dir sizes summed, file sizes last-wins."""
    merged: Listing = {}
    for listing in listings:
        for name, entry in listing.items():
            seen = merged.get(name)
            if seen is None:
                merged[name] = entry
            elif name.endswith("/"):
                merged[name] = Entry(seen.type | entry.type, seen.size + entry.size)
            else:
                merged[name] = Entry(seen.type | entry.type, entry.size)
    return {name: merged[name] for name in sorted(merged)}
