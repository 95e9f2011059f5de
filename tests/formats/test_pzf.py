"""PZF codec: hand-built headers and payloads from protocol.md §5, property round trips,
corrupt blobs, and (when pymecompress is installed) cross-checks with PYME's C codec."""
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyme_desk.formats import pzf
from pyme_desk.formats.huffman import compress
from pyme_desk.formats.pzf import PZFError, decode, encode, read_header
from tests.formats.test_huffman import bits_to_bytes, leaf


def smlm_frame(shape=(256, 256), n_spots=20, seed=0) -> np.ndarray:
    """A camera-like uint16 frame: 100 ADU offset, Poisson background, Gaussian spots."""
    rng = np.random.default_rng(seed)
    expected = np.full(shape, 20.0)
    x = np.arange(shape[0])[:, None]
    y = np.arange(shape[1])[None, :]
    for cx, cy, photons in zip(rng.uniform(0, shape[0], n_spots),
                               rng.uniform(0, shape[1], n_spots),
                               rng.uniform(200, 2000, n_spots)):
        expected += photons / (2 * np.pi * 1.3**2) * np.exp(
            -((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.3**2))
    return (100 + rng.poisson(expected)).astype(np.uint16)


def header(version=3, fmt=1, comp=0, quant=0, order=b"C", seq=0, frame=0, w=1, h=1, d=1,
           stamp=0, q_off=0.0, q_scale=1.0, data_offset=64) -> bytes:
    """A header assembled field by field at the offsets of the spec's table."""
    size = 64 if version >= 3 else 48
    blob = bytearray(size)
    blob[0:2] = b"BD"
    blob[2] = version
    blob[3] = fmt
    blob[4] = comp
    blob[5] = quant
    blob[6:7] = order
    blob[8:16] = seq.to_bytes(8, "little", signed=True)
    blob[16:20] = frame.to_bytes(4, "little")
    blob[20:24] = w.to_bytes(4, "little")
    blob[24:28] = h.to_bytes(4, "little")
    blob[28:32] = d.to_bytes(4, "little")
    blob[32:40] = stamp.to_bytes(8, "little")
    blob[40:44] = struct.pack("<f", q_off)
    blob[44:48] = struct.pack("<f", q_scale)
    if version >= 3:
        blob[48:52] = data_offset.to_bytes(4, "little")
    return bytes(blob)


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and bit pattern (so NaNs compare equal)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes("F") == b.tobytes("F")


# -- golden blobs --------------------------------------------------------------------------

def test_encoded_header_matches_spec_layout():
    frame = np.arange(6, dtype=np.uint16).reshape(2, 3)
    blob = encode(frame, compression="raw", sequence_id=-7, frame_num=9, timestamp=11.9)
    expected = header(fmt=1, comp=0, order=b"C", seq=-7, frame=9, w=2, h=3, stamp=11)
    assert blob == expected + frame.astype("<u2").tobytes("C")


def test_encoded_header_with_quantization_fields():
    frame = np.full((4, 2), 500, dtype=np.uint16, order="F")
    blob = encode(frame, quantization="sqrt", quant_offset=100, quant_scale=0.5)
    assert blob[:64] == header(fmt=1, comp=1, quant=1, order=b"F", w=4, h=2, q_off=100.0,
                               q_scale=0.5)
    # every pixel quantises to round(sqrt(400) / 0.5) = 40: a lone-leaf stream of 8 codes
    assert blob[64:] == bits_to_bytes(leaf(40) + "0" * 8)
    assert np.all(decode(blob) == 500)


def test_hand_built_huffcode_frame_decodes():
    # 2 x 2 uint8 frame, C order: [[3, 9], [9, 9]]; tree 0 (1 3) (1 9): 3=0, 9=1.
    payload = bits_to_bytes("0" + leaf(3) + leaf(9) + "0111")
    blob = header(fmt=0, comp=1, order=b"C", w=2, h=2) + payload
    out = decode(blob)
    assert out.dtype == np.uint8
    assert out.tolist() == [[3, 9], [9, 9]]


def test_hand_built_uint16_huffcode_is_bytewise_little_endian():
    # Pixels 0x0102, 0x0201 in memory: bytes 02 01 01 02.  Tree 0 (1 1) (1 2): 1=0, 2=1.
    payload = bits_to_bytes("0" + leaf(1) + leaf(2) + "1001")
    out = decode(header(fmt=1, comp=1, w=2, h=1) + payload)
    assert out.tolist() == [[0x0102], [0x0201]]


def test_version1_header_decodes_and_ignores_dim_order():
    frame = np.arange(6, dtype=np.uint8)
    blob = header(version=1, fmt=0, comp=0, order=b"F", w=2, h=3, seq=5) + frame.tobytes()
    h = read_header(blob)
    assert (h.version, h.dim_order, h.data_offset, h.sequence_id) == (1, "C", 48, 5)
    assert decode(blob).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_version2_header_decodes_with_fortran_order():
    frame = np.arange(6, dtype="<f4")
    blob = header(version=2, fmt=2, comp=0, order=b"F", w=2, h=3) + frame.tobytes()
    out = decode(blob)
    assert read_header(blob).dim_order == "F"
    assert out.tolist() == [[0, 2, 4], [1, 3, 5]]
    assert out.flags.f_contiguous


def test_version3_honours_data_offset():
    blob = header(fmt=0, w=1, h=2, data_offset=70) + b"\xff" * 6 + bytes([4, 5])
    assert decode(blob).tolist() == [[4, 5]]


def test_huffcode_chunks_are_decoded():
    frame = np.arange(40, dtype=np.uint16).reshape(5, 8)
    raw = frame.astype("<u2").tobytes()
    parts = [raw[:30], raw[30:]]
    payload = struct.pack("<H", 2) + b"".join(
        struct.pack("<II", len(c), len(p)) + c for p in parts for c in [compress(p)])
    blob = header(fmt=1, comp=2, w=5, h=8) + payload
    assert np.array_equal(decode(blob), frame)


# -- round trips ---------------------------------------------------------------------------

frames = st.tuples(st.integers(0, 9), st.integers(0, 9), st.sampled_from([None, 1, 2, 3]),
                   st.sampled_from(["u1", "<u2", ">u2", "<f4"])).flatmap(
    lambda t: hnp.arrays(np.dtype(t[3]), t[:2] if t[2] is None else t[:3]))


@settings(max_examples=300, deadline=None)
@given(frames, st.sampled_from(["raw", "huffcode", "HUFFCODE"]),
       st.sampled_from([None, "C", "F"]))
def test_lossless_round_trip(frame, compression, order):
    blob = encode(frame, compression=compression, order=order)
    h = read_header(blob)
    out = decode(blob)
    expected = frame.reshape(frame.shape[:2]) if frame.ndim == 3 and frame.shape[2] == 1 \
        else frame
    assert same_pixels(out, expected.astype(expected.dtype.newbyteorder("=")))
    assert out.flags.writeable
    assert h.dim_order == (order or ("F" if frame.flags.f_contiguous
                                     and not frame.flags.c_contiguous else "C"))
    if out.ndim > 1 and min(out.shape) > 1:
        assert out.flags.f_contiguous == (h.dim_order == "F")


def test_fortran_frame_keeps_its_order_without_copy_semantics_change():
    frame = np.asfortranarray(smlm_frame((64, 32)))
    blob = encode(frame)
    assert read_header(blob).dim_order == "F"
    assert blob[64:] == compress(frame.tobytes("F"))
    assert np.array_equal(decode(blob), frame)


def test_realistic_frame_round_trip_and_ratio():
    frame = smlm_frame()
    blob = encode(frame)
    assert np.array_equal(decode(blob), frame)
    assert frame.nbytes / len(blob) > 2.2


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint16, st.tuples(st.integers(1, 12), st.integers(1, 12))),
       st.floats(0, 1000, width=32), st.floats(0.125, 100, width=32))
def test_sqrt_quantization_error_bound(frame, offset, scale):
    out = decode(encode(frame, quantization="sqrt", quant_offset=offset, quant_scale=scale))
    assert out.dtype == np.uint16 and out.shape == frame.shape
    x = frame.astype(np.float64)
    signal = np.maximum(x - offset, 0)
    q = np.sqrt(signal) / scale
    unclamped = q <= 254.5
    # |sqrt(x - o) - q s| <= s/2, so |x - x'| <= s sqrt(x - o) + s²/4, plus truncation and
    # float32 rounding; below the offset every pixel decodes to the offset itself.
    bound = scale * np.sqrt(signal) + scale**2 / 4 + 1 + 1e-6 * (x + offset)
    err = np.abs(out.astype(np.float64) - np.maximum(x, offset))
    assert np.all(err[unclamped] <= bound[unclamped])
    assert np.all(out[~unclamped] == min(int((255 * np.float32(scale)) ** 2 + offset), 65535))


def test_sqrt_decode_formula_is_float32_then_truncated():
    codes = bits_to_bytes("0" + leaf(3) + leaf(7) + "01")
    blob = header(fmt=1, comp=1, quant=1, w=2, h=1, q_off=100.7, q_scale=0.3) + codes
    q = np.array([3, 7], dtype=np.float32)
    expected = ((q * np.float32(0.3)) ** 2 + np.float32(100.7)).astype(np.uint16)
    assert decode(blob).ravel().tolist() == expected.tolist() == [101, 105]


def test_sqrt_float32_frame():
    frame = np.array([[0.0, 4.0], [100.0, np.nan]], dtype=np.float32)
    out = decode(encode(frame, quantization="sqrt", quant_scale=1.0))
    assert out.dtype == np.float32
    assert out.tolist() == [[0.0, 4.0], [100.0, 0.0]]


@settings(max_examples=100, deadline=None)
@given(st.integers(-2**63, 2**63 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.floats(0, 1e6, width=32), st.floats(0.0625, 100, width=32),
       st.sampled_from([None, "sqrt"]))
def test_header_fields_round_trip(seq, frame_num, stamp, offset, scale, quant):
    frame = np.zeros((3, 2, 4), dtype=np.uint16)
    blob = encode(frame, sequence_id=seq, frame_num=frame_num, timestamp=stamp,
                  quantization=quant, quant_offset=offset, quant_scale=scale)
    h = read_header(blob)
    assert (h.version, h.sequence_id, h.frame_num, h.timestamp) == (3, seq, frame_num, stamp)
    assert (h.width, h.height, h.depth, h.shape) == (3, 2, 4, (3, 2, 4))
    assert (h.quant_offset, h.quant_scale) == (offset, scale)
    assert h.data_format == pzf.DataFormat.UINT16 and h.data_offset == 64
    assert h.compression == pzf.Compression.HUFFCODE
    assert h.quantization == (pzf.Quantization.SQRT if quant else pzf.Quantization.NONE)
    assert decode(blob).shape == (3, 2, 4)


# -- refusals and corrupt blobs ------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(compression="raw", quantization="sqrt"), "SQRT quantization needs HUFFCODE"),
    (dict(compression="huffcode_chunks"), "unsupported compression"),
    (dict(compression="zip"), "unsupported compression"),
    (dict(quantization="log"), "unsupported quantization"),
    (dict(quantization="sqrt", quant_scale=0.0), "positive finite scale"),
    (dict(order="X"), "order must be"),
    (dict(frame_num=-1), "frame_num"),
    (dict(timestamp=2**64), "timestamp"),
])
def test_encode_refuses_bad_options(kwargs, message):
    with pytest.raises(PZFError, match=message):
        encode(np.zeros((2, 2), np.uint16), **kwargs)


@pytest.mark.parametrize("frame, message", [
    (np.zeros((2, 2), np.int32), "not int32"),
    (np.zeros(4, np.uint16), "not 1-D"),
    (np.zeros((2, 2, 2, 2), np.uint8), "not 4-D"),
])
def test_encode_refuses_bad_frames(frame, message):
    with pytest.raises(PZFError, match=message):
        encode(frame)


def test_pzf_error_is_a_value_error():
    assert issubclass(PZFError, ValueError)


GOOD = encode(smlm_frame((16, 16)))


@pytest.mark.parametrize("blob, message", [
    (b"", "too short"),
    (b"XY" + GOOD[2:], "magic"),
    (GOOD[:2] + b"\x04" + GOOD[3:], "newer than"),
    (GOOD[:40], "truncated inside its header"),
    (header(version=2)[:47], "truncated inside its header"),
    (header(fmt=3), "unknown DataFormat 3"),
    (header(comp=3), "unknown DataCompression 3"),
    (header(quant=2), "unknown DataQuantization 2"),
    (header(order=b"X"), "unknown DimOrder"),
    (header(data_offset=10), "DataOffset"),
    (header(data_offset=65), "DataOffset"),
    (header(comp=0, quant=1), "SQRT quantization with RAW"),
    (header(fmt=1, comp=0, w=2, h=2) + bytes(7), "payload truncated"),
    (header(w=2**32 - 1, h=2**32 - 1, d=2**32 - 1), "payload truncated"),
    (GOOD[:-100], "runs out of bits"),
    (header(fmt=0, comp=1, w=2) + bits_to_bytes("0" + leaf(5)), "inside its code tree"),
    (header(comp=1, w=2**32 - 1, h=2**32 - 1) + bytes(100), "cannot hold"),
    (header(comp=2, w=4) + struct.pack("<HII", 1, 50, 8), "claims 50 bytes"),
    (header(comp=2, w=4) + struct.pack("<H", 2), "header of chunk 0"),
    (header(comp=2, w=4) + struct.pack("<H", 0), "hold 0 bytes"),
])
def test_corrupt_blobs_raise_clear_errors(blob, message):
    with pytest.raises(PZFError, match=message):
        decode(blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(1, len(GOOD)))
def test_mutated_blobs_decode_or_raise_pzf_error(position, value, length):
    blob = bytearray(GOOD[:length])
    if position < len(blob):
        blob[position] = value
    try:
        decode(bytes(blob))
    except PZFError:
        pass


# -- PYME's C codec (optional) -------------------------------------------------------------

def _bcl():
    return pytest.importorskip("pymecompress.bcl", exc_type=ImportError)


def test_pymecompress_decodes_our_payload():
    bcl = _bcl()
    frame = smlm_frame((64, 48))
    blob = encode(frame, order="F")
    raw = bcl.HuffmanDecompress(np.frombuffer(blob[64:], np.uint8).copy(), frame.nbytes)
    assert raw.tobytes() == frame.tobytes("F")


def test_we_decode_pymecompress_payload_and_quantization():
    bcl = _bcl()
    frame = smlm_frame((64, 48))
    plain = bcl.HuffmanCompress(np.frombuffer(frame.tobytes("C"), np.uint8).copy())
    blob = header(fmt=1, comp=1, order=b"C", w=64, h=48) + plain.tobytes()
    assert np.array_equal(decode(blob), frame)

    quantized = bcl.HuffmanCompressQuant(np.ascontiguousarray(frame), 100.0, 2.0)
    theirs = decode(header(fmt=1, comp=1, quant=1, w=64, h=48, q_off=100.0, q_scale=2.0)
                    + quantized.tobytes())
    ours = decode(encode(frame, quantization="sqrt", quant_offset=100.0, quant_scale=2.0,
                         order="C"))
    # PYME's AVX quantiser uses an approximate square root: codes may differ by one step.
    theirs_q = np.sqrt(theirs.astype(np.float64) - 100.0 + 0.5) / 2.0
    ours_q = np.sqrt(ours.astype(np.float64) - 100.0 + 0.5) / 2.0
    assert np.abs(np.round(theirs_q) - np.round(ours_q)).max() <= 1
