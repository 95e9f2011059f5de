"""GUI tests run offscreen (no display needed); set before anything imports Qt."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("PyQt5")
pytest.importorskip("pytestqt")

from PyQt5.QtGui import QFontInfo  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402

from pyme_desk.config import Config  # noqa: E402
from pyme_desk.model.desk import Desk  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def font_guard(qapp):
    """Offscreen Qt renders text blank when no font is installed: fail loudly instead."""
    family = QFontInfo(QApplication.font()).family()
    assert family, "no font available to Qt: install fonts-dejavu-core (see docs/gui-testing.md)"


@pytest.fixture
def desk(data_root, tmp_path):
    """A started desk over a cluster of one (an in-process data server on 127.0.0.1)."""
    config = Config(values={"dataserver-root": str(data_root), "dataserver-filter": "guitest"}, env={})
    d = Desk(config, discover=False, attached_file=tmp_path / "nodes.json")
    d.start()
    yield d
    d.stop()


@pytest.fixture
def window(qtbot, desk):
    from pyme_desk.gui.app import QtMainWindow

    w = QtMainWindow(desk)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()
