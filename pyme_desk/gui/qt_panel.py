"""The shape every panel has: a desk in, ``refresh()`` on a timer the panel owns, a widget out."""
from __future__ import annotations

from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import QWidget

from pyme_desk.gui.qt_workers import QtPollBridge


class QtPanel(QWidget):
    """Base of the panels.  A panel subscribes to desk pollers with :meth:`follow`; results are
    stored as they arrive and drawn by :meth:`refresh` every ``period_ms`` (only when something
    changed), so bursts of results never queue up redraws."""

    name = ""  # key in QtMainWindow.panels
    title = ""  # tab label ("&&" for a literal "&")

    def __init__(self, desk, period_ms: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.desk = desk
        self._dirty = True
        self.results: dict[str, object] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def follow(self, poller: str) -> None:
        bridge = QtPollBridge(self.desk, poller, self)
        bridge.result.connect(lambda r, name=poller: self._store(name, r))
        latest = self.desk.latest(poller)
        if latest is not None:
            self._store(poller, latest)

    def _store(self, name: str, result) -> None:
        self.results[name] = result
        self._dirty = True

    def _tick(self) -> None:
        if self._dirty:
            self._dirty = False
            self.refresh()

    def refresh(self) -> None:
        """Draw the latest results; no I/O here."""
