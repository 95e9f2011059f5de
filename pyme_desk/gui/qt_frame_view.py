"""A camera frame with contrast controls (a histogram with draggable levels beside it).

Built from an unnamed ViewBox, an ImageItem and a HistogramLUTItem rather than pyqtgraph's
ImageView, which registers a global named view that outlives the widget.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5.QtWidgets import QWidget


class QtFrameView(pg.GraphicsLayoutWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.box = self.addViewBox(lockAspect=True, invertY=True)
        self.item = pg.ImageItem()
        self.box.addItem(self.item)
        self.histogram = pg.HistogramLUTItem()
        self.histogram.setImageItem(self.item)
        self.addItem(self.histogram)
        self.image: np.ndarray | None = None

    def set_frame(self, frame: np.ndarray, auto_levels: bool = True) -> None:
        """Show ``frame`` (``[x, y]``); keeps the user's contrast unless ``auto_levels``."""
        first = self.image is None or self.image.shape != frame.shape
        self.image = frame
        self.item.setImage(frame, autoLevels=auto_levels or first)
        if first:
            self.box.autoRange()
