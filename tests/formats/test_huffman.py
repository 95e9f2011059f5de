"""BCL-layout Huffman coder: hand-built streams from the spec's bit layout, round trips,
corrupt input, and (when pymecompress is installed) cross-decoding with PYME's C codec."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyme_desk.formats.huffman import HuffmanError, compress, decompress


def bits_to_bytes(bits: str) -> bytes:
    """Pack a string of '0'/'1' (spaces ignored) MSB-first, zero-padding the last byte."""
    bits = bits.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


def leaf(symbol: int) -> str:
    return "1" + format(symbol, "08b")


# -- golden streams written by hand from protocol.md §5.3 ----------------------------------

def test_two_leaf_tree_stream_decodes():
    # root internal; 0-child 'a', 1-child 'b'; data "abba" = 0 1 1 0
    stream = bits_to_bytes("0" + leaf(ord("a")) + leaf(ord("b")) + "0110")
    assert decompress(stream, 4).tobytes() == b"abba"


def test_unbalanced_tree_children_are_read_in_order():
    # 0 (0 (1 a)(1 b)) (1 c): a=00, b=01, c=1.  Data "cabca".
    tree = "0" + "0" + leaf(ord("a")) + leaf(ord("b")) + leaf(ord("c"))
    stream = bits_to_bytes(tree + "1" + "00" + "01" + "1" + "00")
    assert decompress(stream, 5).tobytes() == b"cabca"


def test_deep_chain_tree_uses_codes_longer_than_lookup_table():
    # A chain: symbol k has code 1^k 0 for k < 30, and symbol 30 has code 1^30 (31 leaves).
    depth = 30
    tree = "".join("0" + leaf(k) for k in range(depth)) + leaf(depth)
    codes = {k: "1" * k + "0" for k in range(depth)}
    codes[depth] = "1" * depth
    message = [30, 0, 29, 5, 30, 13, 1, 12, 30, 30]
    stream = bits_to_bytes(tree + "".join(codes[s] for s in message))
    assert decompress(stream, len(message)).tolist() == message


def test_single_symbol_stream_layout():
    # Root is a leaf 'A'; the encoder adds one unread 0 bit per symbol (9 + 5 bits -> 2 bytes).
    golden = bits_to_bytes(leaf(ord("A")) + "00000")
    assert golden == bytes([0xA0, 0x80])
    assert compress(b"AAAAA") == golden
    assert decompress(golden, 5).tobytes() == b"AAAAA"


def test_empty_input_gives_empty_payload():
    assert compress(b"") == b""
    assert decompress(b"", 0).size == 0


def test_encoder_output_follows_layout_for_two_symbols():
    # Two symbols must give the 1-bit code tree: 0, leaf, leaf; then one bit per byte.
    out = compress(b"xyyx")
    tree_x_first = bits_to_bytes("0" + leaf(ord("x")) + leaf(ord("y")) + "0110")
    tree_y_first = bits_to_bytes("0" + leaf(ord("y")) + leaf(ord("x")) + "1001")
    assert out in (tree_x_first, tree_y_first)


# -- round trips ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_arbitrary_bytes(data):
    assert decompress(compress(data), len(data)).tobytes() == data


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 7, 200, 255]), max_size=5000))
def test_round_trip_small_alphabets(symbols):
    data = bytes(symbols)
    assert decompress(compress(data), len(data)).tobytes() == data


def tree_depths(payload: bytes) -> dict[int, int]:
    """Code length per symbol of the pre-order tree at the start of a stream (spec reading)."""
    bits = "".join(format(b, "08b") for b in payload)
    depths: dict[int, int] = {}
    pos = 0

    def node(depth: int) -> None:
        nonlocal pos
        pos += 1
        if bits[pos - 1] == "1":
            depths[int(bits[pos:pos + 8], 2)] = depth
            pos += 8
        else:
            node(depth + 1)
            node(depth + 1)

    node(0)
    return depths


def test_round_trip_skewed_statistics_need_length_limit():
    # Fibonacci frequencies give an unlimited Huffman code deeper than 16 bits.
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])
    data = np.repeat(np.arange(26, dtype=np.uint8), fib)
    np.random.default_rng(1).shuffle(data)
    payload = compress(data)
    assert np.array_equal(decompress(payload, data.size), data)
    depths = tree_depths(payload)
    assert sorted(depths) == list(range(26))
    assert max(depths.values()) <= 16  # an unlimited code would reach 25
    assert sum(2.0 ** -d for d in depths.values()) == 1.0  # a complete prefix code


def test_accepts_arrays_in_memory_order():
    frame = np.arange(12, dtype="<u2").reshape(3, 4, order="F")
    assert decompress(compress(frame), 24).tobytes() == frame.tobytes(order="F")


# -- corrupt input -------------------------------------------------------------------------

def test_truncated_stream_raises():
    data = np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    payload = compress(data)
    with pytest.raises(HuffmanError, match="runs out of bits"):
        decompress(payload[: len(payload) // 2], len(data))


def test_truncated_tree_raises():
    payload = bits_to_bytes("0" + leaf(5))  # second child missing
    with pytest.raises(HuffmanError, match="inside its code tree"):
        decompress(payload, 3)


def test_tree_with_too_many_nodes_raises():
    # A complete tree of depth 9 has 1023 nodes (leaves may repeat symbols).
    def full(depth: int) -> str:
        return leaf(depth) if depth == 9 else "0" + full(depth + 1) + full(depth + 1)
    with pytest.raises(HuffmanError, match="more than 511 nodes"):
        decompress(bits_to_bytes(full(0)) + bytes(100), 10)


def test_output_larger_than_stream_can_hold_is_refused():
    with pytest.raises(HuffmanError, match="cannot hold"):
        decompress(bytes([0xA0, 0x80]), 10**9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2000))
def test_garbage_never_crashes(payload, n_out):
    try:
        out = decompress(payload, n_out)
    except HuffmanError:
        return
    assert out.size == n_out


# -- PYME's C codec (optional) -------------------------------------------------------------

def _bcl():
    return pytest.importorskip("pymecompress.bcl", exc_type=ImportError)


def _test_corpus() -> list[bytes]:
    rng = np.random.default_rng(3)
    return [b"q", b"qq" * 50, b"xyzzy" * 100, bytes(range(256)) * 4,
            rng.integers(0, 256, 20000, dtype=np.uint8).tobytes(),
            (100 + rng.poisson(20, 30000)).astype("<u2").tobytes()]


def test_pymecompress_decodes_our_streams():
    bcl = _bcl()
    for data in _test_corpus():
        ours = np.frombuffer(compress(data), dtype=np.uint8).copy()
        assert bcl.HuffmanDecompress(ours, len(data)).tobytes() == data


def test_we_decode_pymecompress_streams():
    bcl = _bcl()
    for data in _test_corpus():
        theirs = bcl.HuffmanCompress(np.frombuffer(data, dtype=np.uint8).copy())
        assert decompress(theirs.tobytes(), len(data)).tobytes() == data
