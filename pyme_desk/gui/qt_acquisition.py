"""Acquisition & analysis panel: series being spooled (latest frame, frames/s, MB/s, backlog),
the demo mode's "Simulate acquisition", analysis launch, per-rule progress, and the live
localization preview (rendered image, localizations/s, photon and precision histograms, export)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                             QHeaderView,
                             QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QTableWidget,
                             QTableWidgetItem, QVBoxLayout, QWidget)

from pyme_desk.gui.qt_frame_view import QtFrameView
from pyme_desk.gui.qt_panel import QtPanel
from pyme_desk.gui.qt_workers import run_task
from pyme_desk.model.preview import PRECISION_BINS, PHOTON_BINS, PreviewSnapshot

COLUMNS = ("Series", "State", "Frames stored", "Frames/s", "MB/s", "Backlog", "Message")


class QtPreview(QGroupBox):
    """The live localization preview: image, rate, histograms and export."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Live localization preview", parent)
        self.view = pg.GraphicsLayoutWidget()
        self.image = pg.ImageItem()
        box = self.view.addViewBox(lockAspect=True, invertY=True)
        box.addItem(self.image)
        hists = pg.GraphicsLayoutWidget()
        self.photons = hists.addPlot(title="Photons").plot(stepMode="center", fillLevel=0, brush="#90caf9")
        hists.nextRow()
        self.precision = hists.addPlot(title="Precision (nm)").plot(stepMode="center", fillLevel=0,
                                                                   brush="#a5d6a7")
        self.rate = QLabel("waiting for localizations")
        export = QPushButton("Export image...")
        export.clicked.connect(self.choose_export)
        self.snapshot: PreviewSnapshot | None = None
        grid = QGridLayout(self)
        grid.addWidget(self.view, 0, 0, 2, 1)
        grid.addWidget(hists, 0, 1)
        bar = QHBoxLayout()
        bar.addWidget(self.rate, 1)
        bar.addWidget(export)
        grid.addLayout(bar, 1, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)

    def show_snapshot(self, snap: PreviewSnapshot) -> None:
        self.snapshot = snap
        self.image.setImage(snap.image, autoLevels=False,
                            levels=(0, max(float(np.percentile(snap.image, 99.9)), 1.0)))
        self.photons.setData(PHOTON_BINS, snap.photon_counts)
        self.precision.setData(PRECISION_BINS, snap.precision_counts)
        self.rate.setText(f"{snap.localizations:,} localizations, {snap.per_second:,.0f}/s")

    def choose_export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export the rendered image", "render.png",
                                              "PNG image (*.png);;TIFF image (*.tif *.tiff)")
        if name:
            try:
                self.export(Path(name))
            except (OSError, ValueError) as exc:
                self.rate.setText(f"export failed: {exc}")

    def export(self, path: Path) -> None:
        """Save the rendered image at full resolution (8-bit, scaled to its 99.9th percentile)
        as PNG or TIFF."""
        if self.snapshot is None:
            raise ValueError("there is no rendered image yet")
        image = self.snapshot.full_image()
        top = max(float(np.percentile(image, 99.9)), 1.0)
        pixels = np.ascontiguousarray((np.clip(image / top, 0, 1) * 255).astype(np.uint8).T)
        height, width = pixels.shape
        qimage = QImage(pixels.data, width, height, width, QImage.Format_Grayscale8)
        if not qimage.save(str(path)):
            raise OSError(f"cannot write {path} (use a .png or .tif name in a writable folder)")


class QtAcquisitionPanel(QtPanel):
    name = "acquisition"
    title = "Acquisition && analysis"

    def __init__(self, desk, period_ms: int = 250, parent: QWidget | None = None) -> None:
        super().__init__(desk, period_ms, parent)
        # -- demo mode and acquisitions
        self.frames = QSpinBox(minimum=10, maximum=1_000_000, value=2000, singleStep=500)
        self.rate = QSpinBox(minimum=1, maximum=2000, value=100, suffix=" frames/s")
        simulate = QPushButton("Simulate acquisition")
        simulate.setObjectName("simulateButton")
        simulate.clicked.connect(self.simulate)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_acquisitions)
        self.demo_message = QLabel()
        demo = QHBoxLayout()
        for w in (QLabel("Demo:"), self.frames, self.rate, simulate, self.stop_button):
            demo.addWidget(w)
        demo.addWidget(self.demo_message, 1)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(140)
        self.latest = QtFrameView()
        self.latest.setMinimumWidth(260)
        # -- analysis
        analysis = QGroupBox("Localization analysis")
        form = QFormLayout(analysis)
        self.series = QComboBox()
        self.threshold = QDoubleSpinBox(minimum=0.1, maximum=100.0, value=1.0, singleStep=0.1)
        self.fit = QComboBox()
        self.fit.addItems(["CPU", "GPU"])
        self.launch_button = QPushButton("Launch analysis")
        self.launch_button.clicked.connect(self.launch)
        self.analysis_message = QLabel()
        self.analysis_message.setWordWrap(True)
        form.addRow("Series", self.series)
        form.addRow("Detection threshold (SNR)", self.threshold)
        form.addRow("Fit on", self.fit)
        form.addRow(self.launch_button)
        form.addRow(self.analysis_message)
        self.rules_box = QVBoxLayout()
        form.addRow(self.rules_box)
        self.rule_bars: dict[str, QProgressBar] = {}
        self.preview = QtPreview()

        top = QHBoxLayout()
        left = QVBoxLayout()
        left.addLayout(demo)
        left.addWidget(self.table)
        left.addWidget(analysis)
        top.addLayout(left, 3)
        top.addWidget(self.latest, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 2)
        layout.addWidget(self.preview, 3)
        self.follow("acquisitions")
        self.follow("rules")
        self.follow("analyses")
        reason = desk.analysis_unavailable()
        self.launch_button.setEnabled(not reason)
        self.analysis_message.setText(reason)

    # -- actions -----------------------------------------------------------------------------

    def simulate(self) -> None:
        try:
            acquisition = self.desk.simulate(n_frames=self.frames.value(), frame_rate=float(self.rate.value()))
        except (RuntimeError, ValueError) as exc:
            self.demo_message.setText(f"cannot simulate: {exc}")
            return
        self.demo_message.setText(f"simulating {acquisition.series}")

    def stop_acquisitions(self) -> None:
        for acquisition in self.desk.acquisitions:
            run_task(acquisition.stop)

    def launch(self) -> None:
        series = self.series.currentText()
        if not series:
            self.analysis_message.setText("choose a series to analyse")
            return
        settings = {"threshold": self.threshold.value(), "fit": self.fit.currentText().lower()}
        self.analysis_message.setText(f"launching analysis of {series} ...")
        run_task(self.desk.launch_analysis, series, settings,
                 on_done=lambda run: self.analysis_message.setText(f"analysing {run.series}"),
                 on_error=lambda e: self.analysis_message.setText(f"cannot launch analysis: {e}"))

    # -- drawing -----------------------------------------------------------------------------

    def refresh(self) -> None:
        result = self.results.get("acquisitions")
        acquisitions = result.value or () if result is not None else ()
        self.table.setRowCount(len(acquisitions))
        for row, a in enumerate(acquisitions):
            values = (a.series, a.state, f"{a.frames_stored} / {a.frames_total}", f"{a.frames_per_s:.0f}",
                      f"{a.mb_per_s:.1f}", str(a.backlog), a.error)
            for col, text in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(text))
        names = [a.series for a in acquisitions]
        if [self.series.itemText(i) for i in range(self.series.count())] != names:
            current = self.series.currentText()
            self.series.clear()
            self.series.addItems(names)
            if current in names:
                self.series.setCurrentIndex(names.index(current))
        live = [a for a in acquisitions if a.latest_frame is not None]
        if live:
            self.latest.set_frame(live[-1].latest_frame, auto_levels=False)
        self._draw_rules()
        self._draw_analyses()

    def _draw_analyses(self) -> None:
        result = self.results.get("analyses")
        analyses = result.value or () if result is not None else ()
        if not analyses:
            return
        latest = analyses[-1]
        if latest.error:
            self.analysis_message.setText(f"analysis of {latest.series} failed: {latest.error}")
        elif latest.rule_id:
            self.analysis_message.setText(
                f"analysis of {latest.series}: {latest.state}, {latest.tasks_completed} of "
                f"{latest.frames_released} frames fitted" + (f", {latest.tasks_failed} failed" if latest.tasks_failed else ""))
        if latest.preview is not None and (self.preview.snapshot is None
                                           or latest.preview.localizations != self.preview.snapshot.localizations):
            self.preview.show_snapshot(latest.preview)

    def _draw_rules(self) -> None:
        result = self.results.get("rules")
        rules = result.value or () if result is not None else ()
        for rule in rules:
            bar = self.rule_bars.get(rule.rule_id)
            if bar is None:
                bar = self.rule_bars[rule.rule_id] = QProgressBar()
                self.rules_box.addWidget(bar)
            bar.setMaximum(max(rule.posted, 1))
            bar.setValue(rule.completed + rule.failed)
            bar.setFormat(f"{rule.rule_id[:14]}: {rule.completed}/{rule.posted} done, {rule.failed} failed")
