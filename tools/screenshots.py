"""Save a PNG of each panel of the main window in a realistic state.

    python tools/screenshots.py --out DIR [--root DATA_ROOT]

Starts a cluster of one on a temporary data root (loopback only) and a second node run by a
node agent (``pyme-desk node``, attached by URL and token), runs a simulated acquisition and
its analysis, waits for them to show in every panel, and saves ``<panel>.png`` per tab plus
``window.png``.  Runs offscreen when there is no display.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    parser.add_argument("--root", type=Path, help="data root (default: a temporary folder)")
    parser.add_argument("--frames", type=int, default=400, help="frames to simulate")
    parser.add_argument("--no-agent", action="store_true", help="do not start a second node")
    args = parser.parse_args(argv)

    from PyQt5.QtWidgets import QApplication

    from pyme_desk.config import Config
    from pyme_desk.gui.app import QtMainWindow
    from pyme_desk.gui.qt_resources import app_icon, style_sheet
    from pyme_desk.model.desk import Desk, default_services

    app = QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    app.setStyleSheet(style_sheet())
    root = args.root or Path(tempfile.mkdtemp(prefix="pyme-desk-screens-"))
    config = Config(values={"dataserver-root": str(root / "data"), "nodeserver-num_workers": 2})
    desk = Desk(config, services=default_services(config, False, log_dir=root / "logs", state_dir=root / "state"),
                discover=False)
    agent = None if args.no_agent else start_agent(root)
    desk.start()
    if agent is not None:
        desk.attach_node(wait_for_agent(agent, root), AGENT_TOKEN)
    window = QtMainWindow(desk)
    window.resize(1400, 900)
    window.show()

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    first = desk.simulate("demo/2026_11_25/cells_001", n_frames=args.frames, frame_rate=200, width=128, height=128)
    while not first.wait(0.05):
        pump(0.05)
    desk.simulate("demo/2026_11_25/cells_002", n_frames=100000, frame_rate=50, width=128, height=128)
    if not desk.analysis_unavailable():
        window.panels["acquisition"].threshold.setValue(3.0)  # the form shows what was launched
        desk.launch_analysis("demo/2026_11_25/cells_001", {"threshold": 3.0, "fit": "cpu"})
    files = window.panels["files"]
    pump(2.0)
    files.open("demo/2026_11_25")
    pump(1.5)
    for row in range(files.table.rowCount()):
        if files.table.item(row, 0).text().startswith("cells_001"):
            files.table.selectRow(row)
    pump(2.0)
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        pump(1.2)
        name = list(window.panels)[index]
        window.grab().save(str(args.out / f"{name}.png"))
        print(args.out / f"{name}.png")
    window.tabs.setCurrentIndex(0)
    pump(0.3)
    window.grab().save(str(args.out / "window.png"))
    window.shutdown()
    window.deleteLater()
    app.processEvents()
    if agent is not None:
        agent.terminate()
        agent.wait(30)
    return 0


AGENT_TOKEN = "screenshot-token"


def start_agent(root: Path) -> subprocess.Popen:
    """A second node on this machine: ``pyme-desk node`` with its own data root and state."""
    (root / "agent.token").write_text(AGENT_TOKEN + "\n", encoding="utf-8")
    env = dict(os.environ, XDG_STATE_HOME=str(root / "agent-state"), LOCALAPPDATA=str(root / "agent-state"))
    return subprocess.Popen([sys.executable, "-m", "pyme_desk", "node", "--port", "0", "--workers", "1",
                             "--port-file", str(root / "agent.json"), "--token-file", str(root / "agent.token"),
                             "--root", str(root / "agent-data"), "--log-dir", str(root / "agent-logs")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_agent(agent: subprocess.Popen, root: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not (root / "agent.json").exists():
        if agent.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the second node (pyme-desk node) did not start")
        time.sleep(0.1)
    return json.loads((root / "agent.json").read_text(encoding="utf-8"))["url"]


if __name__ == "__main__":
    sys.exit(main())
