"""Nodes panel: one row per node with health, CPU, memory, disk and network sparklines; attach/detach."""
from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                             QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.gui.qt_sparkline import sparkline_pixmap
from pyme_desk.model import formatting as fmt
from pyme_desk.model.nodes import UNHEALTHY, UNREACHABLE, normalise_url

COLUMNS = ("Node", "Address", "Health", "CPU", "Memory", "Disk free", "Net in", "Net out", "Uptime")
HEALTH_BACKGROUND = {UNHEALTHY: "#fff3e0", UNREACHABLE: "#ffebee"}
HEALTH_TEXT = {UNHEALTHY: "#ef6c00", UNREACHABLE: "#c62828"}


class QtNodesPanel(QtPanel):
    name = "nodes"
    title = "Nodes"

    def __init__(self, desk, period_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(28)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.address = QLineEdit(placeholderText="http://host:15348/  (a node's data server)")
        self.address.returnPressed.connect(self.attach)
        attach = QPushButton("Attach")
        attach.clicked.connect(self.attach)
        detach = QPushButton("Detach")
        detach.clicked.connect(self.detach)
        self.message = QLabel()
        bar = QHBoxLayout()
        bar.addWidget(self.address, 2)
        bar.addWidget(attach)
        bar.addWidget(detach)
        bar.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(bar)
        self.follow("nodes")

    def nodes(self) -> tuple:
        result = self.results.get("nodes")
        return result.value.nodes if result is not None and result.value is not None else ()

    def attach(self) -> None:
        try:
            url = self.desk.attached.add(normalise_url(self.address.text()))
        except ValueError as exc:
            self.message.setText(str(exc))
            return
        except OSError as exc:
            self.message.setText(f"cannot remember the node: {exc.strerror or exc}")
            return
        self.address.clear()
        self.message.setText(f"attached {url}")
        self.desk.poke("nodes")

    def detach(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        nodes = self.nodes()
        for index in rows:
            if index.row() < len(nodes):
                node = nodes[index.row()]
                if not node.attached:
                    self.message.setText(f"{node.name} was discovered, not attached: it cannot be detached")
                    continue
                self.desk.attached.remove(node.url)
                self.message.setText(f"detached {node.url}")
        self.desk.poke("nodes")

    def refresh(self) -> None:
        result = self.results.get("nodes")
        if result is not None and result.error:
            self.message.setText(f"cannot read node status: {result.error}")
        nodes = self.nodes()
        self.table.setRowCount(len(nodes))
        for row, n in enumerate(nodes):
            health = n.health + (f": {n.reason}" if n.reason else "")
            disk = fmt.size(n.disk_free) + (f" of {fmt.size(n.disk_total)}" if n.disk_total else "")
            cells = ((n.name + (" (attached)" if n.attached else ""), None), (n.url, None), (health, None),
                     (fmt.percent(n.cpu_percent), ("cpu", 100.0)),
                     (fmt.percent(n.memory_percent), ("memory", 100.0)), (disk, None),
                     (fmt.rate(n.net_in), ("net_in", None)), (fmt.rate(n.net_out), ("net_out", None)),
                     (n.uptime.split(".")[0], None))
            background = QColor(HEALTH_BACKGROUND[n.health]) if n.health in HEALTH_BACKGROUND else None
            for col, (text, spark) in enumerate(cells):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                item.setText(text)
                if spark is not None:
                    key, top = spark
                    item.setData(Qt.DecorationRole, sparkline_pixmap(n.history.get(key, ()), top=top))
                item.setBackground(background if background is not None else QColor(0, 0, 0, 0))
            self.table.item(row, 2).setForeground(QColor(HEALTH_TEXT.get(n.health, "#2e7d32")))
