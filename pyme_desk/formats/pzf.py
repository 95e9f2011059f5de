"""PZF: PYME's single-frame image format (protocol.md §5), read and written byte-compatibly.

A PZF blob is a packed little-endian header followed by the pixel payload, either raw or
Huffman-coded (BCL layout, see :mod:`pyme_desk.formats.huffman`), optionally square-root
quantised to 8-bit codes first.  We read header versions 1 to 3 and write version 3.

Indexing convention
-------------------
PYME indexes images as ``[x, y]``: a frame is an array of shape ``(Width, Height)``, so
``Width = shape[0]`` and ``Height = shape[1]`` (a third axis, if any, is ``Depth``).  The
header's ``DimOrder`` says how the payload is laid out in memory: ``F`` (x varies fastest) or
``C`` (the last axis varies fastest).  :func:`encode` writes the array's own memory order
unless told otherwise, so no transposing copy is made; :func:`decode` returns an array of
shape ``(Width, Height)`` (``(Width, Height, Depth)`` when ``Depth > 1``) laid out in the
header's order.  Either way ``frame[x, y]`` is the same pixel.

Defaults follow PYME's spooler: Huffman compression, no quantisation.  Square-root
quantisation (``quantization="sqrt"``) stores ``round(sqrt(max(x - offset, 0)) / scale)``
clamped to 0..255; it only makes sense with Huffman coding, and this module refuses it with
raw storage (PYME cannot read that combination back).  PYME's acquisition software uses
offset = camera AD offset and scale ≈ 0.5 (in units of the shot-noise sigma), and expects
``offset >= 0`` and ``0.001 <= scale <= 100``.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from pyme_desk.formats.huffman import HuffmanError, compress, decompress

__all__ = [
    "PZFError", "PZFHeader", "DataFormat", "Compression", "Quantization",
    "encode", "decode", "read_header", "MAGIC", "VERSION", "HEADER_SIZE",
]

MAGIC = b"BD"
VERSION = 3
HEADER_SIZE = 64
OLD_HEADER_SIZE = 48  # versions below 3

# Fields through QuantScale are common to every version; version 3 adds DataOffset + padding.
_COMMON = struct.Struct("<2sBBBBcBqIIIIQff")
_V3_TAIL = struct.Struct("<I12s")
assert _COMMON.size == OLD_HEADER_SIZE and _COMMON.size + _V3_TAIL.size == HEADER_SIZE


class PZFError(ValueError):
    """A PZF blob cannot be decoded, or a frame cannot be encoded as asked."""


class DataFormat(enum.IntEnum):
    """Pixel type codes of the header's DataFormat byte."""
    UINT8 = 0
    UINT16 = 1
    FLOAT32 = 2


class Compression(enum.IntEnum):
    """Payload coding codes of the header's DataCompression byte."""
    RAW = 0
    HUFFCODE = 1
    HUFFCODE_CHUNKS = 2  # read only: PYME's writer for it is broken


class Quantization(enum.IntEnum):
    """Quantisation codes of the header's DataQuantization byte."""
    NONE = 0
    SQRT = 1


_DTYPES = {
    DataFormat.UINT8: np.dtype("u1"),
    DataFormat.UINT16: np.dtype("<u2"),
    DataFormat.FLOAT32: np.dtype("<f4"),
}


@dataclass(frozen=True)
class PZFHeader:
    """Every field of a PZF header, decoded."""
    version: int
    data_format: DataFormat
    compression: Compression
    quantization: Quantization
    dim_order: Literal["C", "F"]
    sequence_id: int
    frame_num: int
    width: int
    height: int
    depth: int
    timestamp: int
    quant_offset: float
    quant_scale: float
    data_offset: int

    @property
    def dtype(self) -> np.dtype:
        """The decoded pixel type (little-endian)."""
        return _DTYPES[self.data_format]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the decoded array: (Width, Height), plus Depth when it is not 1."""
        if self.depth == 1:
            return (self.width, self.height)
        return (self.width, self.height, self.depth)

    @property
    def n_pixels(self) -> int:
        return self.width * self.height * self.depth


# ------------------------------------------------------------------------------------------
# Header
# ------------------------------------------------------------------------------------------

def _enum_field(kind: type[enum.IntEnum], value: int, field: str) -> enum.IntEnum:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(f"{m.value}={m.name}" for m in kind)
        raise PZFError(f"PZF header has unknown {field} {value} (expected {known})") from None


def read_header(blob: bytes) -> PZFHeader:
    """Decode the header of a PZF blob (versions 1 to 3); raise PZFError if it is not one."""
    view = memoryview(blob).cast("B")
    if len(view) < 3:
        raise PZFError(f"PZF blob too short for a header ({len(view)} bytes)")
    if bytes(view[:2]) != MAGIC:
        raise PZFError(f"not a PZF blob: magic is {bytes(view[:2])!r}, expected {MAGIC!r}")
    version = view[2]
    if version > VERSION:
        raise PZFError(f"PZF version {version} is newer than the supported version {VERSION}")
    size = HEADER_SIZE if version >= 3 else OLD_HEADER_SIZE
    if len(view) < size:
        raise PZFError(f"PZF blob truncated inside its header ({len(view)} of {size} bytes)")
    (_, _, fmt, comp, quant, order, _, seq, frame, width, height, depth, stamp, q_off,
     q_scale) = _COMMON.unpack_from(view)
    data_offset = size
    if version >= 3:
        data_offset, _ = _V3_TAIL.unpack_from(view, _COMMON.size)
        if not HEADER_SIZE <= data_offset <= len(view):
            raise PZFError(f"PZF DataOffset {data_offset} lies outside the blob "
                           f"({HEADER_SIZE}..{len(view)} bytes)")
    if version < 2:
        dim_order = "C"
    elif order in (b"C", b"F"):
        dim_order = order.decode()
    else:
        raise PZFError(f"PZF header has unknown DimOrder {order!r} (expected b'C' or b'F')")
    return PZFHeader(
        version=version,
        data_format=_enum_field(DataFormat, fmt, "DataFormat"),
        compression=_enum_field(Compression, comp, "DataCompression"),
        quantization=_enum_field(Quantization, quant, "DataQuantization"),
        dim_order=dim_order, sequence_id=seq, frame_num=frame, width=width, height=height,
        depth=depth, timestamp=stamp, quant_offset=q_off, quant_scale=q_scale,
        data_offset=data_offset,
    )


def _pack_header(h: PZFHeader) -> bytes:
    return (_COMMON.pack(MAGIC, VERSION, h.data_format, h.compression, h.quantization,
                         h.dim_order.encode(), 0, h.sequence_id, h.frame_num, h.width, h.height,
                         h.depth, h.timestamp, h.quant_offset, h.quant_scale)
            + _V3_TAIL.pack(HEADER_SIZE, bytes(12)))


# ------------------------------------------------------------------------------------------
# Square-root quantisation
# ------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _sqrt_quantize(flat: np.ndarray, offset: float, scale: float, out: np.ndarray) -> None:
    """out = clamp(round(sqrt(max(x - offset, 0)) / scale), 0, 255), NaN counting as 0."""
    inv = 1.0 / scale
    for i in range(flat.size):
        v = np.float64(flat[i]) - offset
        if not v > 0.0:
            v = 0.0
        q = np.floor(np.sqrt(v) * inv + 0.5)
        out[i] = np.uint8(q if q < 255.0 else 255.0)


def _dequantize(codes: np.ndarray, h: PZFHeader) -> np.ndarray:
    """Map 8-bit codes back to pixels: (q·scale)² + offset in float32, truncated to the dtype."""
    q = np.arange(256, dtype=np.float32)
    table = (q * np.float32(h.quant_scale)) ** 2 + np.float32(h.quant_offset)
    if h.data_format != DataFormat.FLOAT32:
        info = np.iinfo(h.dtype)
        table = np.clip(np.trunc(table), info.min, info.max)  # saturate, never wrap
    return table.astype(h.dtype)[codes]


# ------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------

def _choose(kind: type[enum.IntEnum], value, what: str, allowed: tuple[enum.IntEnum, ...]):
    """Accept an enum member or its name (any case) for an encode option."""
    if isinstance(value, kind) and value in allowed:
        return value
    if isinstance(value, str) and value.upper() in kind.__members__:
        member = kind[value.upper()]
        if member in allowed:
            return member
    names = " or ".join(repr(m.name.lower()) for m in allowed)
    raise PZFError(f"unsupported {what} {value!r}; use {names}")


def _check_range(name: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise PZFError(f"{name} {value} does not fit the PZF header ({lo}..{hi})")
    return value


def encode(frame: np.ndarray, *, compression: str | Compression = "huffcode",
           quantization: str | Quantization | None = None, quant_offset: float = 0.0,
           quant_scale: float = 1.0, sequence_id: int = 0, frame_num: int = 0,
           timestamp: int | float = 0, order: Literal["F", "C"] | None = None) -> bytes:
    """Encode a 2-D ``[x, y]`` (or 3-D ``[x, y, z]``) uint8/uint16/float32 array as PZF v3.

    ``compression`` is ``"huffcode"`` (default, as PYME's spooler) or ``"raw"``;
    ``quantization`` is None or ``"sqrt"`` (Huffman only).  ``order`` picks the payload's
    memory order; None keeps the array's own (``F`` for Fortran-ordered arrays, else ``C``).
    """
    frame = np.asarray(frame)
    comp = _choose(Compression, compression, "compression",
                   (Compression.RAW, Compression.HUFFCODE))
    quant = Quantization.NONE if quantization is None else _choose(
        Quantization, quantization, "quantization", (Quantization.NONE, Quantization.SQRT))
    if quant == Quantization.SQRT and comp == Compression.RAW:
        raise PZFError("SQRT quantization needs HUFFCODE compression: PYME cannot decode "
                       "quantized frames stored RAW")
    formats = {d.newbyteorder("<"): f for f, d in _DTYPES.items()}
    data_format = formats.get(frame.dtype.newbyteorder("<"))
    if data_format is None:
        raise PZFError(f"PZF stores uint8, uint16 or float32 pixels, not {frame.dtype}")
    if frame.ndim not in (2, 3):
        raise PZFError(f"PZF frames are 2-D [x, y] or 3-D [x, y, z] arrays, "
                       f"not {frame.ndim}-D (shape {frame.shape})")
    if order is None:
        order = "F" if frame.flags.f_contiguous and not frame.flags.c_contiguous else "C"
    elif order not in ("C", "F"):
        raise PZFError(f"order must be 'C' or 'F', not {order!r}")
    u32 = 2**32 - 1
    width, height = frame.shape[:2]
    depth = frame.shape[2] if frame.ndim == 3 else 1
    for name, size in (("Width", width), ("Height", height), ("Depth", depth)):
        _check_range(name, size, 0, u32)
    offset32 = np.float32(quant_offset)
    scale32 = np.float32(quant_scale)
    if quant == Quantization.SQRT and not (np.isfinite(offset32) and np.isfinite(scale32)
                                           and scale32 > 0):
        raise PZFError(f"SQRT quantization needs a finite offset and a positive finite scale "
                       f"(got offset={quant_offset!r}, scale={quant_scale!r})")
    header = PZFHeader(
        version=VERSION, data_format=data_format, compression=comp, quantization=quant,
        dim_order=order,
        sequence_id=_check_range("sequence_id", int(sequence_id), -2**63, 2**63 - 1),
        frame_num=_check_range("frame_num", int(frame_num), 0, u32),
        width=width, height=height, depth=depth,
        timestamp=_check_range("timestamp", int(timestamp), 0, 2**64 - 1),
        quant_offset=float(offset32), quant_scale=float(scale32), data_offset=HEADER_SIZE,
    )
    # Flat pixels in the payload's memory order, little-endian (a view when possible).
    pixels = frame.astype(_DTYPES[data_format], order=order, copy=False).reshape(-1, order=order)
    if quant == Quantization.SQRT:
        codes = np.empty(pixels.size, dtype=np.uint8)
        _sqrt_quantize(pixels, float(offset32), float(scale32), codes)
        pixels = codes
    if comp == Compression.HUFFCODE:
        payload = compress(pixels)
    else:
        payload = pixels.tobytes()
    return _pack_header(header) + payload


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------

def _decode_chunks(payload: memoryview, n_bytes: int) -> np.ndarray:
    """HUFFCODE_CHUNKS payload: uint16 count, then (uint32 comp_len, uint32 raw_len, data)."""
    if len(payload) < 2:
        raise PZFError("PZF chunked payload truncated before its chunk count")
    (n_chunks,) = struct.unpack_from("<H", payload)
    pos = 2
    parts = []
    total = 0
    for k in range(n_chunks):
        if pos + 8 > len(payload):
            raise PZFError(f"PZF chunked payload truncated in the header of chunk {k}")
        comp_len, raw_len = struct.unpack_from("<II", payload, pos)
        pos += 8
        if pos + comp_len > len(payload):
            raise PZFError(f"PZF chunk {k} claims {comp_len} bytes but only "
                           f"{len(payload) - pos} remain")
        total += raw_len
        if total > n_bytes:
            raise PZFError(f"PZF chunks hold more than the {n_bytes} bytes the header implies")
        parts.append(decompress(payload[pos:pos + comp_len], raw_len))
        pos += comp_len
    if total != n_bytes:
        raise PZFError(f"PZF chunks hold {total} bytes but the header implies {n_bytes}")
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint8)


def decode(blob: bytes) -> np.ndarray:
    """Decode a PZF blob into a new array of shape (Width, Height[, Depth]) in DimOrder.

    Raises PZFError for anything that is not a well-formed PZF blob.
    """
    h = read_header(blob)
    if h.quantization == Quantization.SQRT and h.compression == Compression.RAW:
        raise PZFError("PZF blob claims SQRT quantization with RAW compression, a combination "
                       "PYME writes inconsistently; refusing to guess its payload")
    payload = memoryview(blob).cast("B")[h.data_offset:]
    quantized = h.quantization == Quantization.SQRT
    n_bytes = h.n_pixels * (1 if quantized else h.dtype.itemsize)
    try:
        if h.compression == Compression.RAW:
            if len(payload) < n_bytes:
                raise PZFError(f"PZF payload truncated: {len(payload)} bytes, "
                               f"{h.shape} {h.dtype} needs {n_bytes}")
            raw = np.frombuffer(payload, dtype=np.uint8, count=n_bytes).copy()
        elif h.compression == Compression.HUFFCODE:
            raw = decompress(payload, n_bytes)
        else:
            raw = _decode_chunks(payload, n_bytes)
    except HuffmanError as exc:
        raise PZFError(f"corrupt PZF payload: {exc}") from None
    pixels = _dequantize(raw, h) if quantized else raw.view(h.dtype)
    pixels = pixels.astype(h.dtype.newbyteorder("="), copy=False)
    return pixels.reshape(h.shape, order=h.dim_order)
