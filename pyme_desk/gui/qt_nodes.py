"""Nodes panel: one row per node (health, CPU, memory, disk, network sparklines, workers, tasks/s),
attach by address and token / detach, and the rule server's own table of nodes."""
from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                             QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.gui.qt_sparkline import sparkline_pixmap
from pyme_desk.gui.qt_workers import run_task
from pyme_desk.model import formatting as fmt
from pyme_desk.model.node_state import AGENT, UNHEALTHY, UNREACHABLE

COLUMNS = ("Node", "Address", "Health", "CPU", "Memory", "Disk free", "Net in", "Net out", "Workers",
           "Tasks/s", "Assigned", "Uptime")
RULE_COLUMNS = ("Node ID", "Address", "Alive", "Last seen", "Assigned", "Completed", "Failed", "Tasks/s")
HEALTH_BACKGROUND = {UNHEALTHY: "#fff3e0", UNREACHABLE: "#ffebee"}
HEALTH_TEXT = {UNHEALTHY: "#ef6c00", UNREACHABLE: "#c62828"}


def _table(columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(28)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _set(table: QTableWidget, row: int, col: int, text: str) -> QTableWidgetItem:
    item = table.item(row, col)
    if item is None:
        item = QTableWidgetItem()
        table.setItem(row, col, item)
    if item.text() != text:
        item.setText(text)
    return item


def _rate(value: float | None) -> str:
    return fmt.NA if value is None else f"{value:.1f}"


class QtNodesPanel(QtPanel):
    name = "nodes"
    title = "Nodes"

    def __init__(self, desk, period_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        self.table = _table(COLUMNS)
        self.rules = _table(RULE_COLUMNS)
        self.rules_title = QLabel("<b>Rule server: nodes taking tasks</b>")
        self.address = QLineEdit(placeholderText="http://host:15349/  (a node agent, or a data server)")
        self.address.returnPressed.connect(self.attach)
        self.token = QLineEdit(placeholderText="cluster token (for a node agent)")
        self.token.setEchoMode(QLineEdit.Password)  # never shown
        self.token.returnPressed.connect(self.attach)
        self.attach_button = QPushButton("Attach")
        self.attach_button.clicked.connect(self.attach)
        detach = QPushButton("Detach")
        detach.clicked.connect(self.detach)
        self.message = QLabel()
        self.message.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.address, 3)
        bar.addWidget(self.token, 2)
        bar.addWidget(self.attach_button)
        bar.addWidget(detach)
        rules_box = QWidget()
        rules_layout = QVBoxLayout(rules_box)
        rules_layout.setContentsMargins(0, 0, 0, 0)
        rules_layout.addWidget(self.rules_title)
        rules_layout.addWidget(self.rules)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(rules_box)
        split.setSizes([420, 180])
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addLayout(bar)
        layout.addWidget(self.message)
        self.follow("nodes")

    def snapshot(self):
        result = self.results.get("nodes")
        return result.value if result is not None and result.value is not None else None

    def nodes(self) -> tuple:
        snap = self.snapshot()
        return snap.nodes if snap is not None else ()

    def attach(self) -> None:
        """Attach the node at the address typed (checked, and the token tried, off the GUI thread)."""
        url, token = self.address.text(), self.token.text()
        self.attach_button.setEnabled(False)
        self.message.setText(f"attaching {url.strip()} ...")
        run_task(self.desk.attach_node, url, token, on_done=self._attached, on_error=self._attach_failed)

    def _attached(self, node) -> None:
        self.attach_button.setEnabled(True)
        self.address.clear()
        self.token.clear()
        kind = "node agent" if node.kind == AGENT else "data server"
        self.message.setText(f"attached {node.url} ({kind})")

    def _attach_failed(self, error: str) -> None:
        self.attach_button.setEnabled(True)
        self.message.setText(f"cannot attach: {error}")

    def detach(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        nodes = self.nodes()
        for index in rows:
            if index.row() < len(nodes):
                node = nodes[index.row()]
                if not node.attached:
                    self.message.setText(f"{node.name} was discovered, not attached: it cannot be detached")
                    continue
                self.desk.detach_node(node.url)
                self.message.setText(f"detached {node.url}")

    def refresh(self) -> None:
        result = self.results.get("nodes")
        if result is not None and result.error:
            self.message.setText(f"cannot read node status: {result.error}")
        nodes = self.nodes()
        self.table.setRowCount(len(nodes))
        for row, n in enumerate(nodes):
            health = n.health + (f": {n.reason}" if n.reason else "")
            disk = fmt.size(n.disk_free) + (f" ({100 * n.disk_free / n.disk_total:.0f}%)"
                                            if n.disk_total and n.disk_free is not None else "")
            how = ", ".join(w for w, on in (("agent", n.kind == AGENT), ("attached", n.attached)) if on)
            label = n.name + (f" ({how})" if how else "")
            cells = ((label, None), (n.url, None), (health, None),
                     (fmt.percent(n.cpu_percent), ("cpu", 100.0)),
                     (fmt.percent(n.memory_percent), ("memory", 100.0)), (disk, None),
                     (fmt.rate(n.net_in), ("net_in", None)), (fmt.rate(n.net_out), ("net_out", None)),
                     (n.workers_text, None), (_rate(n.tasks_per_s) if n.workers else "", None),
                     ("" if n.assigned is None else str(n.assigned), None), (n.uptime, None))
            background = QColor(HEALTH_BACKGROUND[n.health]) if n.health in HEALTH_BACKGROUND else None
            for col, (text, spark) in enumerate(cells):
                item = _set(self.table, row, col, text)
                if spark is not None:
                    key, top = spark
                    item.setData(Qt.DecorationRole, sparkline_pixmap(n.history.get(key, ()), top=top))
                item.setBackground(background if background is not None else QColor(0, 0, 0, 0))
            self.table.item(row, 2).setForeground(QColor(HEALTH_TEXT.get(n.health, "#2e7d32")))
            tips = "\n".join(f"worker {w.pid}: {w.state}" + (f" on {w.task}" if w.task else "")
                             + f", {w.tasks_done} done" for w in n.workers)
            self.table.item(row, 8).setToolTip(tips)
            self.table.item(row, 5).setToolTip(f"{fmt.size(n.disk_free)} free of {fmt.size(n.disk_total)}")
        self._refresh_rules()

    def _refresh_rules(self) -> None:
        snap = self.snapshot()
        rule_nodes = snap.rule_nodes if snap is not None else ()
        error = snap.rule_server_error if snap is not None else ""
        self.rules_title.setText("<b>Rule server: nodes taking tasks</b>"
                                 + (f" ({error})" if error else "" if rule_nodes else " (none yet)"))
        self.rules.setRowCount(len(rule_nodes))
        for row, r in enumerate(rule_nodes):
            for col, text in enumerate((r.node_id, r.address, "yes" if r.alive else "no",
                                        f"{r.last_seen_s:.1f} s ago", str(r.assigned), str(r.completed),
                                        str(r.failed), _rate(r.tasks_per_s))):
                _set(self.rules, row, col, text)
            self.rules.item(row, 2).setForeground(QColor("#2e7d32" if r.alive else "#c62828"))
