"""Services panel: every service of the local cluster, its state, and start / stop / restart."""
from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter,
                             QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from pyme_desk.gui.qt_log_viewer import QtLogViewer
from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.gui.qt_workers import run_task
from pyme_desk.model import formatting as fmt
from pyme_desk.model.services import DEGRADED, FAILED, READY, STARTING, STOPPING

COLUMNS = ("Service", "Node", "State", "PID", "Address", "Uptime", "Restarts", "Message")
STATE_COLOURS = {READY: "#2e7d32", STARTING: "#1565c0", STOPPING: "#1565c0",
                 DEGRADED: "#ef6c00", FAILED: "#c62828"}


class QtServicesPanel(QtPanel):
    name = "services"
    title = "Services"

    def __init__(self, desk, period_ms: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._show_log)
        self.buttons = {}
        bar = QHBoxLayout()
        for action in ("start", "stop", "restart"):
            button = QPushButton(action.capitalize())
            button.clicked.connect(lambda _=False, a=action: self.act(a))
            self.buttons[action] = button
            bar.addWidget(button)
        self.message = QLabel()
        bar.addWidget(self.message, 1)
        self.log = QtLogViewer()
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table)
        top_layout.addLayout(bar)
        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(self.log)
        split.setSizes([250, 350])
        QVBoxLayout(self).addWidget(split)
        self.follow("services")

    def services(self) -> tuple:
        result = self.results.get("services")
        return result.value or () if result is not None else ()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.text() if item is not None else None

    def select(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == name:
                self.table.selectRow(row)
                return

    def act(self, action: str, name: str | None = None) -> None:
        """Start, stop or restart the selected service (or ``name``) on a worker thread."""
        name = name or self.selected_name()
        if name is None:
            self.message.setText("select a service first")
            return
        for button in self.buttons.values():
            button.setEnabled(False)
        self.message.setText(f"{action} {name} ...")
        run_task(getattr(self.desk.services, action), name,
                 on_done=lambda _: self._acted(f"{action} {name}: done"),
                 on_error=lambda e: self._acted(f"{action} {name} failed: {e}"))

    def _acted(self, text: str) -> None:
        self.message.setText(text)
        for button in self.buttons.values():
            button.setEnabled(True)
        self.desk.poke("services")

    def refresh(self) -> None:
        result = self.results.get("services")
        if result is not None and result.error:
            self.message.setText(f"cannot read the services: {result.error}")
        services = self.services()
        if self.table.rowCount() != len(services):
            self.table.setRowCount(len(services))
        for row, s in enumerate(services):
            values = (s.name, s.node, s.state, "" if s.pid is None else str(s.pid), s.url,
                      fmt.duration(s.uptime_s), str(s.restarts), s.message)
            for col, value in enumerate(values):
                item = self.table.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, col, item)
                if item.text() != value:
                    item.setText(value)
            colour = STATE_COLOURS.get(s.state)
            self.table.item(row, 2).setForeground(QColor(colour) if colour else QColor("#616161"))
        if self.selected_name() is None and services:
            self.table.selectRow(0)
        self._show_log()

    def _show_log(self) -> None:
        name = self.selected_name()
        current = next((s for s in self.services() if s.name == name), None)
        self.log.set_lines(current.log_tail if current else ())
