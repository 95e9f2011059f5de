"""Frames from TIFF files for the spooler: existing stacks, or a folder another program fills.

* :func:`scan_tiffs` checks a TIFF file, or every TIFF in a folder (in natural name order:
  ``img2.tif`` before ``img10.tif``), *before* anything is spooled, so a bad file stops the
  job with one clear :class:`IngestError` instead of half a series.  Every page of a TIFF is
  one frame; the pages of the files follow each other as one series.
* :func:`tiff_metadata` turns what the TIFF tags say (pixel size from the resolution tags,
  ImageJ or OME metadata; frame interval; software; date) into PYME metadata keys, with
  stated defaults for what a TIFF cannot tell (camera offset and gain).
* :class:`FolderWatcher` yields the frames of TIFF files as another acquisition program
  writes them into a folder: a file is read once its size has stopped changing and tifffile
  can read its pages; pages appended to a file later are picked up too.  Watching ends on
  :meth:`FolderWatcher.stop`, when a file named ``done_name`` appears, or after
  ``idle_timeout`` seconds without anything new; then every remaining page is read.

Frames are returned as PYME indexes them, ``[x, y]`` (the transpose of tifffile's
``[row, column]``, a view, not a copy).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
#: What a TIFF cannot tell us, filled in so PYME's analysis can run (noted in ``Spool.DefaultedKeys``).
DEFAULT_METADATA: dict[str, Any] = {
    "voxelsize.x": 0.1,  # µm
    "voxelsize.y": 0.1,
    "Camera.ADOffset": 0.0,
    "Camera.ElectronsPerCount": 1.0,
    "Camera.ReadNoise": 0.0,
    "Camera.TrueEMGain": 1.0,
    "Camera.NoiseFactor": 1.0,
}
_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3,
                "nanometer": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


class IngestError(Exception):
    """A file cannot be spooled (not a TIFF, unreadable, or pixels PZF cannot hold)."""


@dataclass(frozen=True)
class TiffStack:
    """One TIFF file to spool: its path, frame count and ``[x, y]`` frame shape."""

    path: Path
    frames: int
    shape: tuple[int, int]
    dtype: np.dtype


def tiff_files(folder: Path) -> list[Path]:
    """The TIFF files directly in ``folder``, in natural name order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()),
                  key=_natural_key)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def scan_tiffs(source: Path) -> list[TiffStack]:
    """Check a TIFF file or a folder of them; IngestError names the first bad file."""
    source = Path(source)
    if source.is_dir():
        files = tiff_files(source)
        if not files:
            raise IngestError(f"{source}: no .tif/.tiff files in this folder")
    elif source.is_file():
        files = [source]
    else:
        raise IngestError(f"{source}: no such file or folder")
    stacks = [_scan_one(p) for p in files]
    first = stacks[0]
    for s in stacks[1:]:
        if s.shape != first.shape:
            raise IngestError(f"{s.path}: frames are {s.shape[0]}x{s.shape[1]} but {first.path.name}'s "
                              f"are {first.shape[0]}x{first.shape[1]}; one series needs one frame size")
    return stacks


def _open(path: Path):
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except Exception as e:  # noqa: BLE001 - tifffile raises many kinds for a bad file
        raise IngestError(f"{path}: not a readable TIFF file ({_short(e)})") from None


def _scan_one(path: Path) -> TiffStack:
    with _open(path) as tif:
        try:
            pages = tif.pages
            n = len(pages)
            page = pages.first
            shape, dtype = tuple(page.shape), np.dtype(page.dtype)
        except Exception as e:  # noqa: BLE001
            raise IngestError(f"{path}: not a readable TIFF file ({_short(e)})") from None
    if n == 0:
        raise IngestError(f"{path}: the TIFF holds no images")
    if len(shape) != 2:
        raise IngestError(f"{path}: pages are {shape} arrays; only single-channel (greyscale) "
                          "images can be spooled")
    _check_dtype(dtype, path)
    return TiffStack(path, n, (shape[1], shape[0]), dtype)


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise IngestError(f"{path}: {dtype} pixels cannot be spooled (use uint8, uint16 or float32 data)")


def as_frame(page: np.ndarray, where: str) -> np.ndarray:
    """A tifffile page as a PZF-storable ``[x, y]`` frame: uint8/uint16/float32, transposed view."""
    if page.dtype in (np.uint8, np.uint16, np.float32):
        return page.T
    if page.dtype.kind == "f":
        return page.astype(np.float32).T
    if page.size and (page.min() < 0 or page.max() > 65535):
        raise IngestError(f"{where}: {page.dtype} values outside 0..65535 do not fit uint16 frames")
    return page.astype(np.uint16).T


def read_frames(path: Path, start: int = 0) -> Iterator[np.ndarray]:
    """The ``[x, y]`` frames of one TIFF file, from page ``start`` on."""
    with _open(path) as tif:
        for k in range(start, len(tif.pages)):
            try:
                page = tif.pages[k].asarray()
            except Exception as e:  # noqa: BLE001
                raise IngestError(f"{path}: page {k} cannot be read ({_short(e)})") from None
            yield as_frame(page, f"{path} page {k}")


def stack_frames(stacks: list[TiffStack]) -> Iterator[np.ndarray]:
    """Every frame of the scanned files, file after file."""
    for s in stacks:
        yield from read_frames(s.path)


def tiff_metadata(path: Path) -> dict[str, Any]:
    """PYME metadata for a series made from ``path``: what its tags say, then the defaults."""
    md: dict[str, Any] = {"Spool.SourceFile": str(path), "Spool.Software": "pyme-desk spool"}
    with _open(path) as tif:
        try:
            page = tif.pages.first
            tags = {t.name: t.value for t in page.tags.values()}
            imagej = tif.imagej_metadata or {}
            ome = tif.ome_metadata if tif.is_ome else None
        except Exception as e:  # noqa: BLE001
            raise IngestError(f"{path}: not a readable TIFF file ({_short(e)})") from None
    if tags.get("Software"):
        md["Spool.SourceSoftware"] = str(tags["Software"])
    if tags.get("DateTime"):
        md["Spool.SourceDateTime"] = str(tags["DateTime"])
    if imagej.get("finterval"):
        md["Camera.CycleTime"] = float(imagej["finterval"])
    size = _ome_pixel_size(ome) if ome else None
    if size is None:
        size = _resolution_pixel_size(tags, imagej.get("unit"))
    if size is not None:
        md["voxelsize.x"], md["voxelsize.y"] = size
        md["voxelsize.units"] = "um"
    defaulted = [k for k in DEFAULT_METADATA if k not in md]
    for key in defaulted:
        md[key] = DEFAULT_METADATA[key]
    if "voxelsize.x" in defaulted:
        md["voxelsize.units"] = "um"
    md["Spool.DefaultedKeys"] = defaulted
    return md


def _resolution_pixel_size(tags: dict, imagej_unit: str | None) -> tuple[float, float] | None:
    """Pixel size (µm) from XResolution/YResolution (pixels per unit) and the unit."""
    unit_tag = tags.get("ResolutionUnit")
    unit_code = int(getattr(unit_tag, "value", unit_tag) or 0)
    if unit_code == 2:
        um = 25400.0
    elif unit_code == 3:
        um = 10000.0
    elif imagej_unit and str(imagej_unit).strip().lower() in _UM_PER_UNIT:
        um = _UM_PER_UNIT[str(imagej_unit).strip().lower()]
    else:
        return None
    sizes = []
    for name in ("XResolution", "YResolution"):
        value = tags.get(name)
        try:
            num, den = value
            per_unit = num / den
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        if not per_unit > 0:
            return None
        sizes.append(um / per_unit)
    if unit_code in (2, 3) and abs(sizes[0] - um) < 1e-9:
        return None  # 1 pixel per inch/cm: a placeholder, not a calibration
    return sizes[0], sizes[1]


def _ome_pixel_size(ome: str) -> tuple[float, float] | None:
    sizes = []
    for axis in "XY":
        m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', ome)
        if not m:
            return None
        unit = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', ome)
        factor = _UM_PER_UNIT.get(unit.group(1).lower() if unit else "µm")
        if factor is None:
            return None
        sizes.append(float(m.group(1)) * factor)
    return sizes[0], sizes[1]


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


class FolderWatcher:
    """Yields the frames of TIFF files as they are written into ``folder``; see the module docstring.

    ``poll`` (s) is how often the folder is looked at; a file is read after its size and
    modification time were the same at two looks in a row.
    """

    def __init__(self, folder: Path, *, poll: float = 0.5, idle_timeout: float | None = None,
                 done_name: str = ".done") -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise IngestError(f"{self.folder}: not a folder")
        self.poll = poll
        self.idle_timeout = idle_timeout
        self.done_name = done_name
        self._stop = threading.Event()
        self._done: dict[Path, int] = {}  # frames already yielded per file
        self._seen: dict[Path, tuple[int, int]] = {}  # (size, mtime_ns) at the last look
        self._finished: set[Path] = set()
        self._changed_at = time.monotonic()  # when a file last grew or appeared
        #: the first file read (its tags become the series metadata), None until then
        self.first_file: Path | None = None
        self.frames_read = 0

    def stop(self) -> None:
        """Finish: read what is there and end the iteration (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def frames(self) -> Iterator[np.ndarray]:
        """Frames in file order, then page order, until watching ends."""
        last_news = self._changed_at = time.monotonic()
        while True:
            final = self._should_stop(max(last_news, self._changed_at))
            got = 0
            for frame in self._look(final):
                got += 1
                yield frame
            if got:
                last_news = time.monotonic()
            if final:
                return
            self._stop.wait(self.poll)

    def _should_stop(self, last_news: float) -> bool:
        if self._stop.is_set() or (self.folder / self.done_name).exists():
            return True
        return self.idle_timeout is not None and time.monotonic() - last_news > self.idle_timeout

    def _look(self, final: bool) -> Iterator[np.ndarray]:
        files = tiff_files(self.folder)
        for i, path in enumerate(files):
            if path in self._finished:
                continue
            later_exists = i < len(files) - 1
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            now = (st.st_size, st.st_mtime_ns)
            settled = self._seen.get(path) == now
            if not settled:
                self._changed_at = time.monotonic()
            self._seen[path] = now
            if not (settled or final):
                return  # keep the order: nothing from later files before this one is read
            try:
                for frame in read_frames(path, self._done.get(path, 0)):
                    self._done[path] = self._done.get(path, 0) + 1
                    if self.first_file is None:
                        self.first_file = path
                    self.frames_read += 1
                    yield frame
            except IngestError as e:
                if final or later_exists:
                    raise
                log.debug("%s not readable yet: %s", path, e)
                return
            if self._done.get(path, 0) == 0 and (final or later_exists):
                raise IngestError(f"{path}: the TIFF holds no images")
            if final or later_exists:
                self._finished.add(path)
