"""The application icon and style sheet.

The icon is drawn here (an original design: a dark disc with a ring of bright "blinking
molecules" around a sharp centre dot) and saved into ``resources/`` by
``python -m pyme_desk.gui.qt_resources``; the app loads the saved files and draws the icon
itself when they are missing (e.g. an installed wheel without the source tree).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from PyQt5.QtCore import QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QIcon, QImage, QPainter, QPixmap, QRadialGradient

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def draw_icon(size: int = 256) -> QImage:
    image = QImage(size, size, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.Antialiasing)
    s = size / 256.0
    background = QRadialGradient(QPointF(128 * s, 110 * s), 140 * s)
    background.setColorAt(0.0, QColor("#1e3a5f"))
    background.setColorAt(1.0, QColor("#0b1320"))
    p.setPen(Qt.NoPen)
    p.setBrush(background)
    p.drawRoundedRect(QRectF(8 * s, 8 * s, 240 * s, 240 * s), 48 * s, 48 * s)
    for k in range(12):
        angle = 2 * math.pi * k / 12
        r = 78 * s
        centre = QPointF(128 * s + r * math.cos(angle), 128 * s + r * math.sin(angle))
        glow = QRadialGradient(centre, 22 * s)
        hue = QColor.fromHsvF(0.08 + 0.05 * (k % 3), 0.85, 1.0)
        glow.setColorAt(0.0, hue)
        fade = QColor(hue)
        fade.setAlpha(0)
        glow.setColorAt(1.0, fade)
        p.setBrush(glow)
        p.drawEllipse(centre, 22 * s, 22 * s)
    p.setBrush(QColor("#ffffff"))
    p.drawEllipse(QPointF(128 * s, 128 * s), 14 * s, 14 * s)
    p.end()
    return image


def app_icon() -> QIcon:
    icon = QIcon()
    png = RESOURCES / "pyme-desk.png"
    if png.exists():
        icon.addFile(str(png))
    else:
        for size in ICON_SIZES:
            icon.addPixmap(QPixmap.fromImage(draw_icon(size)))
    return icon


def style_sheet() -> str:
    try:
        return (RESOURCES / "style.qss").read_text(encoding="utf-8")
    except OSError:
        return ""


def write_icons(folder: Path) -> list[Path]:
    """Save ``pyme-desk.png`` (256 px) and ``pyme-desk.ico`` (several sizes) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    png, ico = folder / "pyme-desk.png", folder / "pyme-desk.ico"
    if not draw_icon(256).save(str(png)):
        raise OSError(f"cannot write {png}")
    if not draw_icon(256).scaled(64, 64, Qt.IgnoreAspectRatio, Qt.SmoothTransformation).save(str(ico)):
        raise OSError(f"cannot write {ico} (Qt's ico plugin is missing?)")
    return [png, ico]


if __name__ == "__main__":  # pragma: no cover - a maintenance tool
    from PyQt5.QtWidgets import QApplication

    _app = QApplication(sys.argv[:1])
    for written in write_icons(Path(sys.argv[1]) if len(sys.argv) > 1 else RESOURCES):
        print(written)
