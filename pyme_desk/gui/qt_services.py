"""Services panel: every service of the local cluster and of attached node agents, its state,
start / stop / restart, and its log (an agent's log is fetched from its API off the GUI thread)."""
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
                 DEGRADED: "#ef6c00", FAILED: "#c62828", "unreachable": "#c62828"}
#: Lines of an agent's service log shown.
AGENT_LOG_LINES = 500
KEY_ROLE = Qt.UserRole


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
        self._log_in_flight = False
        self.follow("services")
        self.follow("nodes")

    def services(self) -> tuple:
        """The local cluster's services, then every attached or discovered node agent's."""
        result = self.results.get("services")
        local = (result.value or ()) if result is not None else ()
        nodes = self.results.get("nodes")
        remote = tuple(s for n in (nodes.value.nodes if nodes is not None and nodes.value is not None else ())
                       for s in n.services)
        return tuple(local) + remote

    def selected_key(self) -> tuple[str, str] | None:
        """``(node URL, service name)`` of the selected row (node URL "" for the local cluster)."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return tuple(item.data(KEY_ROLE)) if item is not None and item.data(KEY_ROLE) else None

    def selected_name(self) -> str | None:
        key = self.selected_key()
        return key[1] if key else None

    def select(self, name: str, node_url: str = "") -> None:
        for row in range(self.table.rowCount()):
            if tuple(self.table.item(row, 0).data(KEY_ROLE) or ()) == (node_url, name):
                self.table.selectRow(row)
                return

    def act(self, action: str, name: str | None = None, node_url: str = "") -> None:
        """Start, stop or restart the selected service (or ``name`` on ``node_url``) on a worker thread."""
        if name is None:
            key = self.selected_key()
            if key is None:
                self.message.setText("select a service first")
                return
            node_url, name = key
        where = f" on {node_url}" if node_url else ""
        for button in self.buttons.values():
            button.setEnabled(False)
        self.message.setText(f"{action} {name}{where} ...")
        run_task(self.desk.control, action, name, node_url,
                 on_done=lambda _: self._acted(f"{action} {name}{where}: done"),
                 on_error=lambda e: self._acted(f"{action} {name}{where} failed: {e}"))

    def _acted(self, text: str) -> None:
        self.message.setText(text)
        for button in self.buttons.values():
            button.setEnabled(True)
        self.desk.poke("services")
        self.desk.poke("nodes")

    def refresh(self) -> None:
        result = self.results.get("services")
        if result is not None and result.error:
            self.message.setText(f"cannot read the services: {result.error}")
        services = self.services()
        before = self.selected_key()
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
            self.table.item(row, 0).setData(KEY_ROLE, [s.node_url, s.name])
            colour = STATE_COLOURS.get(s.state)
            self.table.item(row, 2).setForeground(QColor(colour) if colour else QColor("#616161"))
        if before is not None and self.selected_key() != before:
            self.select(before[1], before[0])  # rows moved: keep the same service selected
        if self.selected_name() is None and services:
            self.table.selectRow(0)
        self._show_log()

    def _show_log(self) -> None:
        key = self.selected_key()
        if key is None:
            self.log.set_lines(())
            return
        node_url, name = key
        if not node_url:
            current = next((s for s in self.services() if (s.node_url, s.name) == key), None)
            self.log.set_lines(current.log_tail if current else ())
        elif not self._log_in_flight:
            self._log_in_flight = True
            run_task(self.desk.service_log, name, node_url, AGENT_LOG_LINES,
                     on_done=lambda lines: self._agent_log(key, lines),
                     on_error=lambda e: self._agent_log(key, [f"cannot read the log: {e}"]))

    def _agent_log(self, key: tuple[str, str], lines: list[str]) -> None:
        self._log_in_flight = False
        if self.selected_key() == key:
            self.log.set_lines(lines)
