"""A log viewer: the tail of a service's log, following new lines, with search and copy."""
from __future__ import annotations

from typing import Sequence

from PyQt5.QtWidgets import (QApplication, QCheckBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                             QPushButton, QVBoxLayout, QWidget)

#: Lines kept in the view.
MAX_LINES = 5000


class QtLogViewer(QWidget):
    """Shows lines given to :meth:`set_lines`; appends only what is new while the tail grows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.follow = QCheckBox("Follow", checked=True)
        self.search = QLineEdit(placeholderText="Search the log")
        self.search.returnPressed.connect(self.find_next)
        find = QPushButton("Find next")
        find.clicked.connect(self.find_next)
        copy = QPushButton("Copy")
        copy.clicked.connect(self.copy)
        self.status = QLabel()
        bar = QHBoxLayout()
        for w in (self.follow, self.search, find, copy, self.status):
            bar.addWidget(w)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.text)
        self._shown: tuple[str, ...] = ()

    def set_lines(self, lines: Sequence[str]) -> None:
        lines = tuple(lines)
        if lines == self._shown:
            return
        n = len(self._shown)
        if n and len(lines) >= n and lines[n - 1] == self._shown[-1] and lines[:1] == self._shown[:1]:
            new = lines[n:]
            if new:
                self.text.appendPlainText("\n".join(new))
        else:
            self.text.setPlainText("\n".join(lines[-MAX_LINES:]))
        self._shown = lines
        if self.follow.isChecked():
            bar = self.text.verticalScrollBar()
            bar.setValue(bar.maximum())

    def find_next(self) -> bool:
        """Select the next match of the search text (wrapping round); False if there is none."""
        needle = self.search.text()
        if not needle:
            return False
        found = self.text.find(needle)
        if not found:
            cursor = self.text.textCursor()
            cursor.movePosition(cursor.Start)
            self.text.setTextCursor(cursor)
            found = self.text.find(needle)
        if found:
            self.follow.setChecked(False)
        self.status.setText("" if found else "not found")
        return found

    def copy(self) -> None:
        """Copy the selection, or the whole log when nothing is selected."""
        selected = self.text.textCursor().selectedText().replace("\u2029", "\n")
        QApplication.clipboard().setText(selected or self.text.toPlainText())

    def plain_text(self) -> str:
        return self.text.toPlainText()
