"""The main window and ``run_gui``, the entry point of ``pyme-desk`` with no subcommand.

The window shows the panels of :data:`pyme_desk.gui.panels.PANELS` as tabs over one
:class:`~pyme_desk.model.desk.Desk`, a status bar with the cluster's health, and a notification
when a service fails.  Closing it stops the local cluster (asking first when an acquisition or
an analysis would be cut short); remote nodes keep running.
"""
from __future__ import annotations

import logging
import sys
import traceback

from PyQt5.QtWidgets import (QAction, QApplication, QLabel, QMainWindow, QMessageBox, QTabWidget,
                             QWidget)

from pyme_desk.gui.panels import PANELS
from pyme_desk.gui.qt_resources import app_icon, style_sheet
from pyme_desk.gui.qt_settings import QtFirstRunDialog, QtSettingsDialog
from pyme_desk.gui.qt_workers import QtPollBridge
from pyme_desk.model.errors import describe
from pyme_desk.model.node_state import HEALTHY
from pyme_desk.model.services import FAILED, READY
from pyme_desk.model.settings import Settings

log = logging.getLogger(__name__)


class QtMainWindow(QMainWindow):
    """The control center's window over a started ``desk``."""

    def __init__(self, desk, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self.setWindowTitle("PYME Desk")
        self.setWindowIcon(app_icon())
        self.resize(1280, 820)
        self.tabs = QTabWidget()
        self.panels = {}
        for panel_class, period_ms in PANELS:
            panel = panel_class(desk, period_ms)
            self.panels[panel_class.name] = panel
            self.tabs.addTab(panel, panel_class.title)
        self.setCentralWidget(self.tabs)
        self.health = QLabel("starting ...")
        self.health.setObjectName("healthLabel")
        self.statusBar().addPermanentWidget(self.health)
        settings = QAction("&Settings...", self)
        settings.triggered.connect(self.open_settings)
        quit_action = QAction("&Quit", self)
        quit_action.triggered.connect(self.close)
        menu = self.menuBar().addMenu("&File")
        menu.addAction(settings)
        menu.addAction(quit_action)
        self._failed: set[str] = set()
        self._services = ()
        self._nodes = ()
        for name in ("services", "nodes"):
            bridge = QtPollBridge(desk, name, self)
            bridge.result.connect(lambda r, n=name: self._update_health(n, r))
        self.stopped = False
        if desk.start_error:
            self.notify(desk.start_error)

    def _update_health(self, name: str, result) -> None:
        if result.value is not None:
            if name == "services":
                self._services = result.value
                failed = {s.name for s in self._services if s.state == FAILED}
                for service in failed - self._failed:
                    message = next(s.message for s in self._services if s.name == service)
                    self.notify(f"service {service} failed: {message or 'see its log'}")
                self._failed = failed
            else:
                self._nodes = result.value.nodes
        ready = sum(s.state == READY for s in self._services)
        healthy = sum(n.health == HEALTHY for n in self._nodes)
        text = f"services {ready}/{len(self._services)} ready · nodes {healthy}/{len(self._nodes)} healthy"
        colour = "#2e7d32" if ready == len(self._services) and healthy == len(self._nodes) else "#c62828"
        self.health.setText(text)
        self.health.setStyleSheet(f"color: {colour}")

    def notify(self, message: str) -> None:
        """Tell the user something went wrong, in the window (never on a console)."""
        self.statusBar().showMessage(message, 15000)
        log.warning("%s", message)

    def open_settings(self) -> None:
        QtSettingsDialog(Settings.from_config(self.desk.config), parent=self).exec_()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        busy = self.desk.busy()
        if busy and not self.stopped:
            answer = QMessageBox.question(
                self, "Stop the local cluster?",
                "Closing stops the local cluster, which will cut short:\n  " + "\n  ".join(busy)
                + "\n\nClose anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
            if answer != QMessageBox.Yes:
                event.ignore()
                return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop the panels' timers and the desk (local cluster); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        for panel in self.panels.values():
            panel.timer.stop()
        self.hide()
        QApplication.processEvents()
        self.desk.stop()


def _needs_first_run(config) -> bool:
    return not config.values.get("dataserver-root") and not config.env.get("PYMEDATADIR") \
        and not config.data_root.exists()


def _show_errors_as_messages(window_getter) -> None:
    """Unexpected exceptions go to the log and appear as one line in the window."""
    def hook(kind, value, tb):
        log.error("unexpected error: %s", "".join(traceback.format_exception(kind, value, tb)))
        window = window_getter()
        if window is not None:
            window.notify(f"unexpected error: {describe(value)}")
    sys.excepthook = hook


def run_gui(args, config) -> int:
    """Start the application: first-run dialog if needed, the local cluster, the window."""
    from pyme_desk.model.desk import Desk, default_attached_file

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("PYME Desk")
    app.setWindowIcon(app_icon())
    app.setStyleSheet(style_sheet())
    if _needs_first_run(config):
        dialog = QtFirstRunDialog(Settings.from_config(config))
        if dialog.exec_() != QtFirstRunDialog.Accepted:
            return 0
        from pyme_desk.config import load_config
        config = load_config(args.config) if getattr(args, "config", None) else load_config()
    desk = Desk(config, attached_file=default_attached_file())
    window: list[QtMainWindow] = []
    _show_errors_as_messages(lambda: window[0] if window else None)
    desk.start()
    main = QtMainWindow(desk)
    window.append(main)
    main.show()
    app.aboutToQuit.connect(main.shutdown)
    code = app.exec_()
    main.shutdown()
    main.deleteLater()
    return code
