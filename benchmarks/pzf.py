"""Benchmark the PZF codec on one realistic SMLM camera frame, on one CPU core.

The frame is 2048 x 2048 uint16 (8 MiB): a 100 ADU camera offset, a Poisson background of
20 photons and a few hundred Gaussian spots (sigma 1.3 px, 200-2000 photons each).
Measured, each as the best of ``--repeats`` runs after a warm-up call (so no JIT time):

* ``huffcode``: PZF encode / decode with Huffman coding, lossless;
* ``huffcode_sqrt``: the same with square-root quantisation (offset 100, scale 0.5);
* ``zlib1``: zlib level 1 compress / decompress of the same raw bytes, for scale;
* ``pymecompress``: PYME's C Huffman codec on the same bytes, when it is installed
  (``null`` otherwise).

Speeds are MB/s of raw frame bytes (1 MB = 10**6 bytes) whichever way the data flows;
ratios are raw bytes / encoded bytes.  ``vs_pyme_reference`` divides our HUFFCODE speeds by
the published figures of PYME's C codec (about 270 MB/s encode, 100 MB/s decode).
Numba is limited to one thread; stdout receives exactly one JSON line.

    .venv/bin/python benchmarks/pzf.py
"""
from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"  # before numba is imported

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `pyme_desk` importable from the tree
    sys.path.insert(0, str(REPO_ROOT))

from pyme_desk.formats.pzf import decode, encode  # noqa: E402

PYME_ENCODE_MB_S = 270.0
PYME_DECODE_MB_S = 100.0


def smlm_frame(shape=(2048, 2048), n_spots=300, seed=0) -> np.ndarray:
    """A camera-like uint16 frame: 100 ADU offset, Poisson background, Gaussian spots."""
    rng = np.random.default_rng(seed)
    expected = np.full(shape, 20.0)
    x = np.arange(shape[0])[:, None]
    y = np.arange(shape[1])[None, :]
    sigma = 1.3
    for cx, cy, photons in zip(rng.uniform(0, shape[0], n_spots),
                               rng.uniform(0, shape[1], n_spots),
                               rng.uniform(200, 2000, n_spots)):
        x0, x1 = max(int(cx) - 6, 0), min(int(cx) + 7, shape[0])
        y0, y1 = max(int(cy) - 6, 0), min(int(cy) + 7, shape[1])
        expected[x0:x1, y0:y1] += photons / (2 * np.pi * sigma**2) * np.exp(
            -((x[x0:x1] - cx) ** 2 + (y[:, y0:y1] - cy) ** 2) / (2 * sigma**2))
    return (100 + rng.poisson(expected)).astype(np.uint16)


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (JIT, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def codec_figures(n_bytes: int, enc: Callable[[], bytes], dec: Callable[[bytes], object],
                  repeats: int) -> dict:
    blob = enc()
    return {
        "encode_mb_s": round(n_bytes / best_seconds(enc, repeats) / 1e6, 1),
        "decode_mb_s": round(n_bytes / best_seconds(lambda: dec(blob), repeats) / 1e6, 1),
        "ratio": round(n_bytes / len(blob), 3),
    }


def pymecompress_figures(raw: bytes, repeats: int) -> dict | None:
    try:
        from pymecompress import bcl
    except ImportError:
        return None
    data = np.frombuffer(raw, dtype=np.uint8).copy()
    return codec_figures(len(raw), lambda: bcl.HuffmanCompress(data).tobytes(),
                         lambda b: bcl.HuffmanDecompress(np.frombuffer(b, np.uint8).copy(),
                                                         len(raw)),
                         repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure")
    args = parser.parse_args()

    frame = smlm_frame()
    raw = frame.tobytes()
    n = len(raw)
    print(f"frame {frame.shape} {frame.dtype}, {n} bytes, values {frame.min()}..{frame.max()}",
          file=sys.stderr)

    huff = codec_figures(n, lambda: encode(frame), decode, args.repeats)
    sqrt = codec_figures(n, lambda: encode(frame, quantization="sqrt", quant_offset=100.0,
                                           quant_scale=0.5), decode, args.repeats)
    zlib1 = codec_figures(n, lambda: zlib.compress(raw, 1), zlib.decompress, args.repeats)
    zlib1 = {"compress_mb_s": zlib1["encode_mb_s"], "decompress_mb_s": zlib1["decode_mb_s"],
             "ratio": zlib1["ratio"]}
    report = {
        "benchmark": "pzf",
        "frame": {"shape": list(frame.shape), "dtype": str(frame.dtype), "bytes": n},
        "threads": 1,
        "repeats": args.repeats,
        "huffcode": huff,
        "huffcode_sqrt": sqrt,
        "zlib1": zlib1,
        "pymecompress": pymecompress_figures(raw, args.repeats),
        "pyme_reference_mb_s": {"encode": PYME_ENCODE_MB_S, "decode": PYME_DECODE_MB_S},
        "vs_pyme_reference": {
            "encode": round(huff["encode_mb_s"] / PYME_ENCODE_MB_S, 2),
            "decode": round(huff["decode_mb_s"] / PYME_DECODE_MB_S, 2),
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
