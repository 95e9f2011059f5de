"""Files panel: the cluster's merged listing as a folder tree and a list, breadcrumbs, series
details with a frame viewer (contrast via the histogram), and upload / download with progress."""
from __future__ import annotations

import json
from pathlib import Path

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (QAbstractItemView, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                             QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QTableWidget,
                             QTableWidgetItem, QToolButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                             QWidget)

from pyme_desk.gui.qt_frame_view import QtFrameView
from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.gui.qt_workers import run_task
from pyme_desk.model import formatting as fmt
from pyme_desk.model.files import FileRow, SeriesInfo, breadcrumbs

COLUMNS = ("Name", "Kind", "Size", "Modified")
MODIFIED_COLUMN = 3
PATH_ROLE = Qt.UserRole


class QtFilesPanel(QtPanel):
    """Lists refresh every ``period_ms`` (one listing in flight at a time)."""

    name = "files"
    title = "Files"

    def __init__(self, desk, period_ms: int = 1000, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        self.path = ""
        self.rows: tuple[FileRow, ...] = ()
        self.series: SeriesInfo | None = None
        self._listing_in_flight = False
        self._modified: dict[str, str] = {}  # path -> date text, asked for one selected file at a time
        self._tree_items: dict[str, QTreeWidgetItem] = {}

        self.crumbs = QHBoxLayout()
        self.tree = QTreeWidget()
        self.tree.setHeaderLabel("Folders")
        root = QTreeWidgetItem(["/"])
        root.setData(0, PATH_ROLE, "")
        self.tree.addTopLevelItem(root)
        self._tree_items[""] = root
        self.tree.itemClicked.connect(lambda item, _: self.open(item.data(0, PATH_ROLE)))

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(MODIFIED_COLUMN).setToolTip(
            "Listings carry no dates: the date of a file is asked for when you select it")
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.cellDoubleClicked.connect(self._activated)
        self.table.itemSelectionChanged.connect(self._selected)

        self.summary = QLabel("Select a series to see its frames and metadata.")
        self.summary.setWordWrap(True)
        self.metadata = QPlainTextEdit(readOnly=True)
        self.metadata.setMaximumHeight(140)
        self.frame_index = QSpinBox()
        self.frame_index.setPrefix("frame ")
        self.frame_index.valueChanged.connect(self.show_frame)
        self.viewer = QtFrameView()
        details = QWidget()
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.summary, self.frame_index, self.viewer, self.metadata):
            details_layout.addWidget(w)

        upload = QPushButton("Upload...")
        upload.clicked.connect(self.choose_upload)
        download = QPushButton("Download...")
        download.clicked.connect(self.choose_download)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()  # shown once a transfer runs
        self.message = QLabel()
        bar = QHBoxLayout()
        for w in (upload, download, self.progress):
            bar.addWidget(w)
        bar.addWidget(self.message, 1)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(self.table)
        split.addWidget(details)
        split.setSizes([180, 380, 520])
        layout = QVBoxLayout(self)
        layout.addLayout(self.crumbs)
        layout.addWidget(split, 1)
        layout.addLayout(bar)
        self._draw_crumbs()
        self.reload()

    # -- navigation --------------------------------------------------------------------------

    def open(self, path: str) -> None:
        """Show directory ``path`` (loaded on a worker thread)."""
        self.path = path.strip("/")
        self.rows = ()
        self.table.setRowCount(0)
        self._draw_crumbs()
        self.reload()

    def reload(self) -> None:
        if self.desk.files is None or self._listing_in_flight:
            return
        self._listing_in_flight = True
        path = self.path
        run_task(self.desk.files.list, path, on_done=lambda rows: self._listed(path, rows),
                 on_error=self._list_failed)

    def refresh(self) -> None:
        self._dirty = True  # listings change underneath us: poll on every tick
        self.reload()

    def _listed(self, path: str, rows: tuple[FileRow, ...]) -> None:
        self._listing_in_flight = False
        self._update_tree(path, rows)
        if path != self.path or rows == self.rows:
            return
        selected = self.selected_row()
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            size = f"{row.size} entries" if row.is_dir else fmt.size(row.size)
            for col, text in enumerate((row.name + ("/" if row.is_dir and not row.is_series else ""),
                                        row.kind, size, self._modified.get(row.path, ""))):
                self.table.setItem(i, col, QTableWidgetItem(text))
            if selected is not None and row.path == selected.path:
                self.table.selectRow(i)

    def _list_failed(self, error: str) -> None:
        self._listing_in_flight = False
        self.message.setText(f"cannot list /{self.path}: {error}")

    def _tree_item(self, path: str) -> QTreeWidgetItem:
        """The tree's item for folder ``path``, made (with its parents) if the tree lacks it."""
        item = self._tree_items.get(path)
        if item is None:
            parent_path, _, name = path.rpartition("/")
            parent = self._tree_item(parent_path)
            item = QTreeWidgetItem([name])
            item.setData(0, PATH_ROLE, path)
            parent.addChild(item)
            parent.setExpanded(True)
            self._tree_items[path] = item
        return item

    def _update_tree(self, path: str, rows: tuple[FileRow, ...]) -> None:
        parent = self._tree_item(path)
        folders = [r for r in rows if r.is_dir and not r.is_series]
        known = {parent.child(i).data(0, PATH_ROLE) for i in range(parent.childCount())}
        for r in folders:
            if r.path not in known:
                item = QTreeWidgetItem([r.name])
                item.setData(0, PATH_ROLE, r.path)
                parent.addChild(item)
                self._tree_items[r.path] = item
        parent.setExpanded(True)

    def _draw_crumbs(self) -> None:
        while self.crumbs.count():
            w = self.crumbs.takeAt(0).widget()
            if w is not None:
                w.setParent(None)
                w.deleteLater()
        for label, path in breadcrumbs(self.path):
            button = QToolButton(text=label)
            button.setAutoRaise(True)
            button.clicked.connect(lambda _=False, p=path: self.open(p))
            self.crumbs.addWidget(button)
        self.crumbs.addStretch(1)

    def selected_row(self) -> FileRow | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.rows):
            return None
        return self.rows[rows[0].row()]

    def _activated(self, row: int, _col: int) -> None:
        if row < len(self.rows) and self.rows[row].is_dir and not self.rows[row].is_series:
            self.open(self.rows[row].path)

    def _selected(self) -> None:
        row = self.selected_row()
        if row is not None and not row.is_dir:
            self._ask_modified(row)
        if row is None or not row.is_series:
            return
        if self.series is not None and self.series.path == row.path:
            return
        self.summary.setText(f"reading {row.path} ...")
        run_task(self.desk.files.series_info, row.path, on_done=self._show_series,
                 on_error=lambda e: self.summary.setText(f"cannot read the series: {e}"))

    def _ask_modified(self, row: FileRow) -> None:
        """Fetch the selected file's date (one HEAD request, on a worker thread)."""
        if row.path in self._modified:
            return
        self._modified[row.path] = "..."
        self._show_modified(row.path)
        run_task(self.desk.files.modified, row.path,
                 on_done=lambda t: self._got_modified(row.path, fmt.timestamp(t)),
                 on_error=lambda e: self._got_modified(row.path, "unknown"))

    def _got_modified(self, path: str, text: str) -> None:
        self._modified[path] = text
        self._show_modified(path)
        selected = self.selected_row()
        if selected is not None and selected.path == path:
            self.summary.setText(f"<b>{path}</b>: {fmt.size(selected.size)}, modified {text}")

    def _show_modified(self, path: str) -> None:
        for i, row in enumerate(self.rows):
            if row.path == path and self.table.item(i, MODIFIED_COLUMN) is not None:
                self.table.item(i, MODIFIED_COLUMN).setText(self._modified[path])

    # -- series ------------------------------------------------------------------------------

    def _show_series(self, info: SeriesInfo) -> None:
        self.series = info
        state = "complete" if info.complete else "being written"
        md = info.metadata
        size = f"{md.get('Camera.ROIWidth', '?')} x {md.get('Camera.ROIHeight', '?')} px"
        self.summary.setText(f"<b>{info.path}</b>: {info.frames} frames, {state}, {size}")
        self.metadata.setPlainText(json.dumps(md, indent=1, sort_keys=True, default=str))
        self.frame_index.blockSignals(True)
        self.frame_index.setRange(0, max(info.frames - 1, 0))
        self.frame_index.setValue(0)
        self.frame_index.blockSignals(False)
        if info.frames:
            self.show_frame(0)

    def show_frame(self, index: int) -> None:
        if self.series is None:
            return
        path = self.series.path
        run_task(self.desk.files.frame, path, index,
                 on_done=lambda frame: self._draw_frame(path, frame),
                 on_error=lambda e: self.message.setText(f"cannot read frame {index}: {e}"))

    def _draw_frame(self, path: str, frame) -> None:
        if self.series is not None and self.series.path == path:
            self.viewer.set_frame(frame)

    # -- transfers ---------------------------------------------------------------------------

    def choose_upload(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Upload a file to the cluster")
        if name:
            self.upload(Path(name))

    def upload(self, source: Path) -> None:
        self.message.setText(f"uploading {source.name} to /{self.path} ...")
        run_task(self.desk.files.upload, source, self.path, on_progress=self._progress,
                 on_done=lambda server: self.message.setText(f"uploaded {source.name} to {server}"),
                 on_error=lambda e: self.message.setText(f"upload failed: {e}"))

    def choose_download(self) -> None:
        row = self.selected_row()
        if row is None or row.is_dir:
            self.message.setText("select a file to download (series are folders of frames)")
            return
        name, _ = QFileDialog.getSaveFileName(self, "Save the file as", row.name)
        if name:
            self.download(row.path, Path(name))

    def download(self, path: str, destination: Path) -> None:
        self.message.setText(f"downloading {path} ...")
        run_task(self.desk.files.download, path, destination, on_progress=self._progress,
                 on_done=lambda p: self.message.setText(f"saved {p}"),
                 on_error=lambda e: self.message.setText(f"download failed: {e}"))

    def _progress(self, done: int, total: int) -> None:
        self.progress.show()
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done if total else 1)
