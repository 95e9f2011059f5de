"""Sparklines: a short history drawn into a small pixmap (cheap enough for every table cell)."""
from __future__ import annotations

import math
from typing import Sequence

from PyQt5.QtCore import QPointF, Qt
from PyQt5.QtGui import QColor, QPainter, QPen, QPixmap, QPolygonF


def sparkline_pixmap(values: Sequence[float], width: int = 90, height: int = 22,
                     colour: str = "#1565c0", top: float | None = None) -> QPixmap:
    """Draw ``values`` (NaN gaps skipped) scaled to ``[0, top]`` (default: their maximum)."""
    pixmap = QPixmap(width, height)
    pixmap.fill(Qt.transparent)
    points = [(i, v) for i, v in enumerate(values[-width:]) if not math.isnan(v)]
    if len(points) < 2:
        return pixmap
    peak = top if top else max(max(v for _, v in points), 1e-9)
    n = max(len(values[-width:]) - 1, 1)
    polygon = QPolygonF([QPointF(i * (width - 1) / n, (height - 2) - (height - 3) * min(v / peak, 1.0))
                         for i, v in points])
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setPen(QPen(QColor(colour), 1.5))
    painter.drawPolyline(polygon)
    painter.end()
    return pixmap
