"""GPU panel: per GPU of the chosen node, utilisation, memory, temperature and power over time,
and the processes using it; or a clear "no GPU on this node: <reason>"."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QTableWidget, QTableWidgetItem,
                             QVBoxLayout, QWidget)

from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.model import formatting as fmt

METRICS = (("utilization", "Utilisation (%)"), ("memory", "Memory (%)"),
           ("temperature", "Temperature (°C)"), ("power", "Power (W)"))


class QtGpuCard(QGroupBox):
    """One GPU: four time plots and a process table; plot items are made once and updated."""

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(f"GPU {index}", parent)
        self.index = index
        plots = QHBoxLayout()
        self.curves = {}
        for key, label in METRICS:
            plot = pg.PlotWidget(title=label)
            plot.setMinimumHeight(140)
            plot.setMouseEnabled(False, False)
            plot.hideButtons()
            curve = plot.plot(pen=pg.mkPen("#1565c0", width=2))
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.curves[key] = curve
            plots.addWidget(plot)
        self.processes = QTableWidget(0, 3)
        self.processes.setHorizontalHeaderLabels(("PID", "Process", "GPU memory"))
        self.processes.setMaximumHeight(110)
        layout = QVBoxLayout(self)
        layout.addLayout(plots)
        layout.addWidget(self.processes)

    def update_from(self, device, history: dict) -> None:
        self.setTitle(f"GPU {device.index}: {device.name or 'unknown model'}")
        for key, _ in METRICS:
            values = np.asarray(history.get(f"gpu{device.index}.{key}", ()), dtype=float)
            self.curves[key].setData(np.arange(len(values)) - len(values) + 1, values, connect="finite")
        self.processes.setRowCount(len(device.processes))
        for row, (pid, name, used) in enumerate(device.processes):
            for col, text in enumerate((str(pid), name or "?", fmt.size(used))):
                self.processes.setItem(row, col, QTableWidgetItem(text))


class QtGpuPanel(QtPanel):
    name = "gpu"
    title = "GPU"

    def __init__(self, desk, period_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        self.node = QComboBox()
        self.node.currentIndexChanged.connect(self.refresh)
        self.message = QLabel()
        self.message.setObjectName("gpuMessage")
        self.message.setWordWrap(True)
        self.cards_box = QVBoxLayout()
        self.cards: dict[int, QtGpuCard] = {}
        top = QHBoxLayout()
        top.addWidget(QLabel("Node:"))
        top.addWidget(self.node, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addLayout(self.cards_box)
        layout.addStretch(1)
        self.follow("nodes")

    def refresh(self) -> None:
        result = self.results.get("nodes")
        nodes = result.value.nodes if result is not None and result.value is not None else ()
        urls = [n.url for n in nodes]
        if [self.node.itemData(i) for i in range(self.node.count())] != urls:
            current = self.node.currentData()
            self.node.blockSignals(True)
            self.node.clear()
            for n in nodes:
                self.node.addItem(f"{n.name} ({n.url})", n.url)
            if current in urls:
                self.node.setCurrentIndex(urls.index(current))
            self.node.blockSignals(False)
        node = next((n for n in nodes if n.url == self.node.currentData()), None)
        if node is None:
            self.message.setText("no node known yet" if result is None or not result.error
                                 else f"cannot read node status: {result.error}")
            self._show_cards(())
            return
        if not node.gpu.available:
            self.message.setText(fmt.gpu_reason(node.gpu.reason))
            self._show_cards(())
            return
        self.message.setText(f"{node.name}: {node.gpu.reason}")
        self._show_cards(node.gpu.devices, node.history)

    def _show_cards(self, devices, history: dict | None = None) -> None:
        wanted = {d.index for d in devices}
        for index in list(self.cards):
            if index not in wanted:
                self.cards.pop(index).deleteLater()
        for device in devices:
            card = self.cards.get(device.index)
            if card is None:
                card = self.cards[device.index] = QtGpuCard(device.index)
                self.cards_box.addWidget(card)
            card.update_from(device, history or {})
