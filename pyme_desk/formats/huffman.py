"""Huffman coding of byte streams in the Basic Compression Library (BCL) stream layout.

This is the entropy coder inside PZF frames (protocol.md §5.3).  The layout, which we follow
bit for bit, is:

* bits are packed MSB-first within each byte;
* the code tree comes first, serialised pre-order: ``1`` then 8 bits of symbol for a leaf,
  ``0`` for an internal node followed by its 0-child subtree and then its 1-child subtree;
* then one code word per input byte (0 = first child, 1 = second child), zero-padded to a
  whole byte;
* a tree that is a single leaf (input of one distinct byte value) is followed by one ``0``
  bit per input byte, which a decoder does not read;
* empty input gives an empty payload.

The stream does not record its own length: the caller must know the decoded size.

Our encoder builds length-limited (at most :data:`MAX_CODE_LEN` bits) canonical codes, which
form a valid prefix tree that any BCL decoder accepts.  Our decoder accepts any valid tree
(up to 511 nodes, any depth).  The hot loops are compiled with numba; compiled code is cached
on disk, so only the first run on a machine pays the JIT cost.
"""
from __future__ import annotations

import heapq

import numba
import numpy as np

__all__ = ["HuffmanError", "compress", "decompress", "MAX_CODE_LEN", "MAX_TREE_NODES"]

#: Longest code word our encoder emits; two of them fit one 32-bit table entry.
MAX_CODE_LEN = 16
#: Largest tree a BCL decoder accepts (256 leaves + 255 internal nodes).
MAX_TREE_NODES = 511
#: Bits resolved by one look-up in the decoder's primary table.
_TABLE_BITS = 12

# Status codes returned by the compiled decoder (numba code cannot raise rich errors).
_OK = 0
_ERR_TREE_TRUNCATED = -1
_ERR_TREE_TOO_BIG = -2
_ERR_DATA_TRUNCATED = -3

_ERROR_TEXT = {
    _ERR_TREE_TRUNCATED: "Huffman stream ends inside its code tree",
    _ERR_TREE_TOO_BIG: f"Huffman code tree has more than {MAX_TREE_NODES} nodes",
    _ERR_DATA_TRUNCATED: "Huffman stream runs out of bits before all bytes are decoded",
}


class HuffmanError(ValueError):
    """A Huffman stream is corrupt or too short for the requested output size."""


# ------------------------------------------------------------------------------------------
# Encoder
# ------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _histogram(data: np.ndarray) -> np.ndarray:
    """Byte histogram, using four partial tables to break store-to-load dependencies."""
    parts = np.zeros((4, 256), dtype=np.int64)
    n = data.size
    n4 = n - n % 4
    for i in range(0, n4, 4):
        parts[0, data[i]] += 1
        parts[1, data[i + 1]] += 1
        parts[2, data[i + 2]] += 1
        parts[3, data[i + 3]] += 1
    for i in range(n4, n):
        parts[0, data[i]] += 1
    return parts[0] + parts[1] + parts[2] + parts[3]


def _huffman_lengths(freqs: np.ndarray) -> np.ndarray:
    """Code length per symbol of a Huffman code for ``freqs`` (zero-frequency symbols get 0)."""
    lengths = np.zeros(256, dtype=np.int64)
    symbols = np.flatnonzero(freqs)
    # Heap items: (weight, tie-break, node id); leaves are ids 0..255, internal nodes 256+.
    heap = [(int(freqs[s]), int(s), int(s)) for s in symbols]
    heapq.heapify(heap)
    parent: dict[int, int] = {}
    next_id = 256
    while len(heap) > 1:
        w0, _, a = heapq.heappop(heap)
        w1, _, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (w0 + w1, next_id, next_id))
        next_id += 1
    depth: dict[int, int] = {}
    for node in range(next_id - 1, 255, -1):  # parents are created after their children
        depth[node] = depth[parent[node]] + 1 if node in parent else 0
    for s in symbols:
        lengths[s] = depth[parent[int(s)]] + 1
    return lengths


def _limited_lengths(freqs: np.ndarray) -> np.ndarray:
    """Huffman code lengths no longer than MAX_CODE_LEN (flatten the statistics until they fit)."""
    freqs = freqs.copy()
    while True:
        lengths = _huffman_lengths(freqs)
        if lengths.max() <= MAX_CODE_LEN:
            return lengths
        nonzero = freqs > 0
        freqs[nonzero] = np.maximum(freqs[nonzero] >> 1, 1)


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code words (right-aligned) for the given complete set of code lengths."""
    codes = np.zeros(256, dtype=np.uint32)
    code = 0
    prev_len = 0
    for s in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[s]) - prev_len
        prev_len = int(lengths[s])
        codes[s] = code
        code += 1
    return codes


def _tree_bits(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The BCL pre-order serialisation of the prefix tree of ``codes``, one bit per element."""
    root: list = [None, None]
    for s in np.flatnonzero(lengths):
        node = root
        n = int(lengths[s])
        for k in range(n - 1, 0, -1):
            bit = (int(codes[s]) >> k) & 1
            if node[bit] is None:
                node[bit] = [None, None]
            node = node[bit]
        node[int(codes[s]) & 1] = int(s)
    bits: list[int] = []

    def emit(node) -> None:
        if isinstance(node, int):
            bits.append(1)
            bits.extend((node >> k) & 1 for k in range(7, -1, -1))
        else:
            bits.append(0)
            emit(node[0])
            emit(node[1])

    emit(root)
    return np.array(bits, dtype=np.uint8)


@numba.njit(cache=True, nogil=True, inline="always")
def _store_word(out: np.ndarray, pos: int, word) -> None:
    """Write the low 32 bits of ``word`` big-endian (MSB-first bit order) at ``out[pos:pos+4]``."""
    out[pos] = np.uint8((word >> np.uint64(24)) & np.uint64(0xFF))
    out[pos + 1] = np.uint8((word >> np.uint64(16)) & np.uint64(0xFF))
    out[pos + 2] = np.uint8((word >> np.uint64(8)) & np.uint64(0xFF))
    out[pos + 3] = np.uint8(word & np.uint64(0xFF))


@numba.njit(cache=True, nogil=True)
def _pack(data: np.ndarray, codes: np.ndarray, lengths: np.ndarray, head: np.ndarray,
          out: np.ndarray) -> int:
    """Write ``head`` bits then the code of every byte of ``data`` into ``out``; return bytes used.

    Pairs of input bytes are coded through one 65536-entry table (at most 32 bits per pair),
    then flushed 32 bits at a time from a 64-bit accumulator.
    """
    pair_code = np.empty(65536, dtype=np.uint32)
    pair_len = np.empty(65536, dtype=np.uint8)
    if data.size >= 4096:  # the table only pays for itself on larger inputs
        for hi in range(256):
            for lo in range(256):
                # the pair index is the first byte in the high bits: codes go out in order
                pair_code[(hi << 8) | lo] = (codes[hi] << np.uint32(lengths[lo])) | codes[lo]
                pair_len[(hi << 8) | lo] = lengths[hi] + lengths[lo]
    acc = np.uint64(0)
    nbits = 0
    pos = 0
    for i in range(head.size):
        acc = (acc << np.uint64(1)) | np.uint64(head[i])
        nbits += 1
        if nbits >= 32:
            nbits -= 32
            word = acc >> np.uint64(nbits)
            _store_word(out, pos, word)
            pos += 4
    n = data.size
    i = 0
    if n >= 4096:
        n2 = n - n % 2
        while i < n2:
            p = (np.int64(data[i]) << 8) | np.int64(data[i + 1])
            acc = (acc << np.uint64(pair_len[p])) | np.uint64(pair_code[p])
            nbits += np.int64(pair_len[p])
            if nbits >= 32:
                nbits -= 32
                word = acc >> np.uint64(nbits)
                _store_word(out, pos, word)
                pos += 4
            i += 2
    while i < n:
        b = data[i]
        acc = (acc << np.uint64(lengths[b])) | np.uint64(codes[b])
        nbits += np.int64(lengths[b])
        if nbits >= 32:
            nbits -= 32
            word = acc >> np.uint64(nbits)
            _store_word(out, pos, word)
            pos += 4
        i += 1
    while nbits > 0:  # final partial word, zero-padded on the right
        if nbits >= 8:
            nbits -= 8
            out[pos] = np.uint8((acc >> np.uint64(nbits)) & np.uint64(0xFF))
        else:
            out[pos] = np.uint8((acc << np.uint64(8 - nbits)) & np.uint64(0xFF))
            nbits = 0
        pos += 1
    return pos


def _as_bytes(data) -> np.ndarray:
    """A flat uint8 view of any bytes-like object or array (no copy when possible)."""
    if isinstance(data, np.ndarray):
        if not data.flags.forc:
            data = np.ascontiguousarray(data)
        return data.reshape(-1, order="A").view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def compress(data) -> bytes:
    """Huffman-code ``data`` (bytes-like or array, taken as its raw bytes) into a BCL stream."""
    raw = _as_bytes(data)
    if raw.size == 0:
        return b""
    freqs = _histogram(raw)
    symbols = np.flatnonzero(freqs)
    if symbols.size == 1:
        # Root is a leaf: 1, the 8-bit symbol, then one unread 0 bit per byte.
        out = np.zeros((9 + raw.size + 7) // 8, dtype=np.uint8)
        s = int(symbols[0])
        out[0] = 0x80 | (s >> 1)
        out[1] = (s & 1) << 7
        return out.tobytes()
    lengths = _limited_lengths(freqs)
    codes = _canonical_codes(lengths)
    head = _tree_bits(codes, lengths)
    total_bits = head.size + int(np.dot(freqs, lengths))
    out = np.empty((total_bits + 7) // 8 + 8, dtype=np.uint8)
    used = _pack(raw, codes, lengths.astype(np.uint8), head, out)
    return out[:used].tobytes()


# ------------------------------------------------------------------------------------------
# Decoder
# ------------------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _read_tree(buf: np.ndarray, child: np.ndarray, symbol: np.ndarray) -> tuple[int, int]:
    """Parse the pre-order tree at the start of ``buf``.

    Fills ``child[node, bit]`` (-1 for leaves) and ``symbol[node]``; returns
    (number of nodes or an error code, bit position after the tree).
    """
    nbits_total = np.int64(buf.size) * 8
    stack = np.empty(MAX_TREE_NODES + 1, dtype=np.int64)  # nodes still waiting for a child 1
    depth = 0
    count = 0
    bit_pos = np.int64(0)
    parent = -1
    while True:
        if count >= MAX_TREE_NODES:
            return _ERR_TREE_TOO_BIG, bit_pos
        if bit_pos >= nbits_total:
            return _ERR_TREE_TRUNCATED, bit_pos
        is_leaf = (buf[bit_pos >> 3] >> (7 - (bit_pos & 7))) & 1
        bit_pos += 1
        node = count
        count += 1
        child[node, 0] = -1
        child[node, 1] = -1
        if parent >= 0:
            if child[parent, 0] < 0:
                child[parent, 0] = node
                stack[depth] = parent
                depth += 1
            else:
                child[parent, 1] = node
        if is_leaf:
            if bit_pos + 8 > nbits_total:
                return _ERR_TREE_TRUNCATED, bit_pos
            s = 0
            for _ in range(8):
                s = (s << 1) | ((buf[bit_pos >> 3] >> (7 - (bit_pos & 7))) & 1)
                bit_pos += 1
            symbol[node] = s
            # climb to the nearest ancestor still missing its 1-child
            if depth == 0:
                return count, bit_pos
            depth -= 1
            parent = stack[depth]
        else:
            parent = node


@numba.njit(cache=True, nogil=True)
def _walk(child: np.ndarray, bits: int, nbits: int) -> tuple[int, int]:
    """Follow the top ``nbits`` of ``bits`` from the root; return (node, bits used).

    Stops at the first leaf, or at the node reached once all bits are used.
    """
    node = 0
    used = 0
    while child[node, 0] >= 0 and used < nbits:
        node = child[node, (bits >> (nbits - 1 - used)) & 1]
        used += 1
    return node, used


@numba.njit(cache=True, nogil=True)
def _build_table(child: np.ndarray, symbol: np.ndarray, tsyms: np.ndarray, tcount: np.ndarray,
                 tlen: np.ndarray, tfirst: np.ndarray, tnode: np.ndarray) -> None:
    """Fill the primary look-up table, indexed by the next _TABLE_BITS bits of the stream.

    An entry holds every whole code word found in those bits (up to three symbols, packed
    little-endian in ``tsyms``, ``tcount`` of them, ``tlen`` bits in all) and the length of the
    first one (``tfirst``).  When even the first code word is longer than the table,
    ``tcount`` is 0 and ``tnode`` is the node reached after all _TABLE_BITS bits.
    """
    for idx in range(1 << _TABLE_BITS):
        node, used = _walk(child, idx, _TABLE_BITS)
        if child[node, 0] >= 0:
            tcount[idx] = 0
            tnode[idx] = node
            continue
        tsyms[idx] = symbol[node]
        tcount[idx] = 1
        tlen[idx] = used
        tfirst[idx] = used
        while tcount[idx] < 3 and tlen[idx] < _TABLE_BITS:
            rest = _TABLE_BITS - tlen[idx]
            node, used = _walk(child, idx & ((1 << rest) - 1), rest)
            if child[node, 0] >= 0:
                break
            tsyms[idx] |= np.int64(symbol[node]) << (8 * tcount[idx])
            tcount[idx] += 1
            tlen[idx] += used


@numba.njit(cache=True, nogil=True)
def _decode(buf: np.ndarray, out: np.ndarray, n_out: int) -> int:
    """Decode ``n_out`` symbols of the BCL stream in ``buf`` into ``out``.

    ``out`` must have two spare bytes past ``n_out``: table hits write three symbols at once.
    """
    if n_out == 0:
        return _OK
    child = np.empty((MAX_TREE_NODES, 2), dtype=np.int64)
    symbol = np.zeros(MAX_TREE_NODES, dtype=np.uint8)
    count, bit_pos = _read_tree(buf, child, symbol)
    if count < 0:
        return count
    if child[0, 0] < 0:  # a lone leaf: its symbol repeated, no bits read
        out[:n_out] = symbol[0]
        return _OK
    size = 1 << _TABLE_BITS
    tsyms = np.zeros(size, dtype=np.int64)
    tcount = np.zeros(size, dtype=np.int64)
    tlen = np.zeros(size, dtype=np.int64)
    tfirst = np.zeros(size, dtype=np.int64)
    tnode = np.zeros(size, dtype=np.int64)
    _build_table(child, symbol, tsyms, tcount, tlen, tfirst, tnode)

    nbuf = buf.size
    pos = bit_pos >> 3
    acc = np.uint64(0)
    nbits = 0
    skip = bit_pos & 7
    # Load the partial first byte, dropping the tree bits already consumed.
    if skip:
        acc = np.uint64((np.int64(buf[pos]) << skip) & 0xFF) << np.uint64(56)
        nbits = 8 - skip
        pos += 1
    shift = np.uint64(64 - _TABLE_BITS)
    i = 0
    while i < n_out:
        # Refill so that at least 57 bits are valid, unless the stream is exhausted.  Bits
        # past ``nbits`` are either zero or the true stream bits, so OR-ing is idempotent.
        if nbits <= 56:
            if pos + 8 <= nbuf:
                word = ((np.uint64(buf[pos]) << np.uint64(56))
                        | (np.uint64(buf[pos + 1]) << np.uint64(48))
                        | (np.uint64(buf[pos + 2]) << np.uint64(40))
                        | (np.uint64(buf[pos + 3]) << np.uint64(32))
                        | (np.uint64(buf[pos + 4]) << np.uint64(24))
                        | (np.uint64(buf[pos + 5]) << np.uint64(16))
                        | (np.uint64(buf[pos + 6]) << np.uint64(8))
                        | np.uint64(buf[pos + 7]))
                acc |= word >> np.uint64(nbits)
                taken = (63 - nbits) >> 3
                pos += taken
                nbits += taken * 8
            else:
                while nbits <= 56 and pos < nbuf:
                    acc |= np.uint64(buf[pos]) << np.uint64(56 - nbits)
                    pos += 1
                    nbits += 8
        idx = acc >> shift
        n_sym = tcount[idx]
        if n_sym > 0:
            length = tlen[idx]
            if length > nbits:  # near the end: only the first code word may be real
                n_sym = 1
                length = tfirst[idx]
                if length > nbits:
                    return _ERR_DATA_TRUNCATED
            packed = tsyms[idx]
            out[i] = np.uint8(packed & 0xFF)
            out[i + 1] = np.uint8((packed >> 8) & 0xFF)
            out[i + 2] = np.uint8((packed >> 16) & 0xFF)
            acc <<= np.uint64(length)
            nbits -= length
            i += n_sym
        else:
            # Code longer than the table: continue the tree walk one bit at a time.
            if nbits < _TABLE_BITS:
                return _ERR_DATA_TRUNCATED
            acc <<= np.uint64(_TABLE_BITS)
            nbits -= _TABLE_BITS
            node = tnode[idx]
            while child[node, 0] >= 0:
                if nbits == 0:
                    if pos >= nbuf:
                        return _ERR_DATA_TRUNCATED
                    acc = np.uint64(buf[pos]) << np.uint64(56)
                    pos += 1
                    nbits = 8
                node = child[node, np.int64(acc >> np.uint64(63))]
                acc <<= np.uint64(1)
                nbits -= 1
            out[i] = symbol[node]
            i += 1
    return _OK


def decompress(payload, n_out: int) -> np.ndarray:
    """Decode a BCL Huffman stream into exactly ``n_out`` bytes (a new writable uint8 array).

    Raises HuffmanError when the stream is corrupt or holds fewer than ``n_out`` symbols.
    """
    if n_out < 0:
        raise HuffmanError(f"cannot decode a negative number of bytes ({n_out})")
    buf = _as_bytes(payload)
    if n_out == 0:
        return np.empty(0, dtype=np.uint8)
    # Every symbol costs at least one bit, even after a lone-leaf tree (the unread 0 bits),
    # so this bounds the allocation a corrupt size field can ask for.
    if n_out > buf.size * 8:
        raise HuffmanError(f"Huffman stream of {buf.size} bytes cannot hold {n_out} symbols")
    out = np.empty(n_out + 2, dtype=np.uint8)
    status = _decode(buf, out, n_out)
    if status != _OK:
        raise HuffmanError(_ERROR_TEXT[status])
    return out[:n_out]
