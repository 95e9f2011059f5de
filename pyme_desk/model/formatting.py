"""Numbers as the panels print them: sizes, rates, durations; ``None`` prints as "n/a"."""
from __future__ import annotations

import math
import time

NA = "n/a"


def size(n: float | None) -> str:
    """Bytes with a binary unit: ``1536`` -> ``"1.5 KiB"``."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return NA
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return NA  # unreachable: the loop returns at TiB


def rate(n: float | None) -> str:
    """Bytes per second: ``"2.0 MiB/s"``."""
    return NA if n is None else size(n) + "/s"


def percent(p: float | None) -> str:
    return NA if p is None or math.isnan(p) else f"{p:.0f}%"


def duration(seconds: float | None) -> str:
    """``3725`` -> ``"1h 02m"``, ``65`` -> ``"1m 05s"``, ``5`` -> ``"5s"``."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def gpu_reason(reason: str) -> str:
    """The GPU panel's message for a node without GPU data: ``"no GPU on this node: <reason>"``."""
    text = reason.strip()
    for prefix in ("no GPU data:", "no GPU:"):
        if text.startswith(prefix):
            text = text[len(prefix):].strip()
            break
    return f"no GPU on this node: {text or 'unknown reason'}"


def timestamp(t: float | None) -> str:
    """Unix time as local ``"2026-11-25 15:40:12"``."""
    return NA if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
