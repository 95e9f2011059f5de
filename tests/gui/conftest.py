"""GUI tests run offscreen (no display needed); set before anything imports Qt."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import importlib.util  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PyQt5")
pytest.importorskip("pytestqt")

from PyQt5.QtGui import QFontInfo  # noqa: E402
from PyQt5.QtWidgets import QApplication  # noqa: E402

from pyme_desk.config import Config  # noqa: E402
from pyme_desk.model.desk import Desk, default_services  # noqa: E402


HAS_SUPERVISOR = importlib.util.find_spec("pyme_desk.supervisor") is not None


@pytest.fixture(scope="session", autouse=True)
def font_guard(qapp):
    """Offscreen Qt renders text blank when no font is installed: fail loudly instead."""
    family = QFontInfo(QApplication.font()).family()
    assert family, "no font available to Qt: install fonts-dejavu-core (see docs/gui-testing.md)"


@pytest.fixture
def desk(request, data_root, tmp_path):
    """A started desk over the embedded cluster of one on 127.0.0.1: the supervisor's data, rule
    and node servers (one worker), or an in-process data server where there is no supervisor.
    Parametrize it indirectly with ``"local"`` to have it find node agents on this machine."""
    # No dataserver-filter: the supervisor's child processes read the default config, so the
    # desk must use the same (default) cluster name as they do.
    config = Config(values={"dataserver-root": str(data_root), "nodeserver-num_workers": 1})
    options = {}
    if HAS_SUPERVISOR:
        options = dict(log_dir=tmp_path / "logs", state_dir=tmp_path / "state")
    d = Desk(config, services=default_services(config, False, **options), discover=False,
             attached_file=tmp_path / "nodes.json", discover_agents=getattr(request, "param", "none"))
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
