"""Settings dialog: data root, server filter, workers, token and ports, checked before saving;
and the first-run dialog that asks where the data should live."""
from __future__ import annotations

from pathlib import Path

from PyQt5.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                             QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from pyme_desk.model.settings import Settings, save, validate

FIELDS = ("data_root", "server_filter", "workers", "token", "dataserver_port", "ruleserver_port",
          "nodeserver_port")


class QtSettingsDialog(QDialog):
    """Edits :class:`Settings`; OK is refused (with the reasons shown) until they are valid."""

    def __init__(self, settings: Settings, config_file: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PYME Desk settings")
        self.config_file = config_file
        self.saved_to: Path | None = None
        self.data_root = QLineEdit(settings.data_root)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        root_row = QHBoxLayout()
        root_row.addWidget(self.data_root, 1)
        root_row.addWidget(browse)
        self.server_filter = QLineEdit(settings.server_filter)
        self.workers = QSpinBox(minimum=0, maximum=1024, specialValueText="one per CPU")
        self.workers.setValue(settings.workers or 0)
        self.token = QLineEdit(settings.token, echoMode=QLineEdit.Password,
                               placeholderText="empty: loopback only")
        self.ports = {}
        for name in ("dataserver_port", "ruleserver_port", "nodeserver_port"):
            box = QSpinBox(minimum=0, maximum=70000)
            box.setValue(getattr(settings, name))
            self.ports[name] = box
        self.errors = {name: QLabel() for name in FIELDS}
        for label in self.errors.values():
            label.setObjectName("fieldError")
            label.setStyleSheet("color: #c62828")
            label.hide()
        form = QFormLayout()
        rows = (("Data root", root_row, "data_root"), ("Cluster (server filter)", self.server_filter,
                "server_filter"), ("Workers", self.workers, "workers"), ("Cluster token", self.token, "token"),
                ("Data server port", self.ports["dataserver_port"], "dataserver_port"),
                ("Rule server port", self.ports["ruleserver_port"], "ruleserver_port"),
                ("Node server port", self.ports["nodeserver_port"], "nodeserver_port"))
        for label, widget, name in rows:
            form.addRow(label, widget)
            form.addRow("", self.errors[name])
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Changes take effect when PYME Desk is started again."))
        layout.addWidget(buttons)

    def settings(self) -> Settings:
        return Settings(data_root=self.data_root.text().strip(), server_filter=self.server_filter.text().strip(),
                        workers=self.workers.value() or None, token=self.token.text().strip(),
                        **{name: box.value() for name, box in self.ports.items()})

    def check(self) -> dict[str, str]:
        problems = validate(self.settings())
        for name, label in self.errors.items():
            label.setText(problems.get(name, ""))
            label.setVisible(name in problems)
        return problems

    def accept(self) -> None:
        if self.check():
            return
        try:
            self.saved_to = save(self.settings(), self.config_file)
        except (OSError, ValueError) as exc:
            self.errors["data_root"].setText(f"cannot save the settings: {exc}")
            self.errors["data_root"].show()
            return
        super().accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the data", self.data_root.text())
        if folder:
            self.data_root.setText(folder)


class QtFirstRunDialog(QtSettingsDialog):
    """The settings dialog shown on first start, to choose where the data lives."""

    def __init__(self, settings: Settings, config_file: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(settings, config_file, parent)
        self.setWindowTitle("Welcome to PYME Desk")
        self.layout().insertWidget(0, QLabel(
            "Choose the folder where this computer keeps the data it acquires and analyses.\n"
            "You can change it later under Settings."))
