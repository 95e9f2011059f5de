"""Panel pieces on their own: acquisition demo, preview, log viewer, settings dialog."""
from importlib.metadata import entry_points

import numpy as np
import pytest
import yaml
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QApplication

from pyme_desk.gui.qt_acquisition import QtPreview
from pyme_desk.gui.qt_log_viewer import QtLogViewer
from pyme_desk.gui.qt_settings import QtSettingsDialog
from pyme_desk.model.preview import LocalizationPreview
from pyme_desk.model.settings import Settings

WAIT_MS = 10000


def test_simulate_button_spools_a_series_shown_in_the_acquisition_panel(qtbot, window, desk):
    panel = window.panels["acquisition"]
    panel.frames.setValue(20)
    panel.rate.setValue(400)
    panel.findChild(type(panel.stop_button), "simulateButton").click()
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "complete",
                    timeout=WAIT_MS)
    assert panel.table.item(0, 2).text() == "20 / 20"
    assert panel.latest.image is not None and panel.latest.image.shape == (128, 128)
    assert panel.series.currentText() == desk.acquisitions[0].series
    if desk.analysis_unavailable():  # no rule/node server in this build: the panel says so
        assert not panel.launch_button.isEnabled() and "rule server" in panel.analysis_message.text()
        return
    if not any(e.name == "localization" for e in entry_points(group="pyme_desk.task_types")):
        pytest.skip("node workers cannot fit: no 'localization' task type entry point is installed")
    # analysis launched from the GUI fills the live preview, which grows as results arrive
    panel.threshold.setValue(2.0)
    panel.launch_button.click()
    qtbot.waitUntil(lambda: panel.preview.snapshot is not None and panel.preview.snapshot.localizations > 0,
                    timeout=60000)
    first = panel.preview.snapshot.localizations
    qtbot.waitUntil(lambda: panel.preview.snapshot.localizations > first
                    or "finished" in panel.analysis_message.text(), timeout=60000)
    assert panel.preview.snapshot.image.sum() > 0
    assert "localizations" in panel.preview.rate.text()


def test_preview_draws_localizations_and_exports_png_and_tiff(qtbot, tmp_path):
    preview = QtPreview()
    qtbot.addWidget(preview)
    model = LocalizationPreview(1000, 500, pixel_nm=10)
    rng = np.random.default_rng(1)
    model.add(rng.uniform(0, 1000, 5000), rng.uniform(0, 500, 5000), rng.gamma(4, 500, 5000),
              rng.uniform(5, 20, 5000))
    preview.show_snapshot(model.snapshot())
    assert "5,000 localizations" in preview.rate.text()
    assert preview.image.image.shape == (100, 50) and preview.image.image.sum() == 5000
    for name in ("render.png", "render.tif"):
        preview.export(tmp_path / name)
        saved = QImage(str(tmp_path / name))
        assert (saved.width(), saved.height()) == (100, 50)


def test_preview_of_a_large_field_draws_summed_bins_and_exports_full_resolution(qtbot, tmp_path):
    preview = QtPreview()
    qtbot.addWidget(preview)
    model = LocalizationPreview(25600, 12800, pixel_nm=10)  # 2560 x 1280 fine bins
    model.add([5, 25595], [5, 12795])
    preview.show_snapshot(model.snapshot())
    assert preview.image.image.shape == (512, 256) and preview.image.image.sum() == 2
    preview.export(tmp_path / "render.png")
    saved = QImage(str(tmp_path / "render.png"))
    assert (saved.width(), saved.height()) == (2560, 1280)


def test_log_viewer_follows_searches_and_copies(qtbot):
    viewer = QtLogViewer()
    qtbot.addWidget(viewer)
    viewer.set_lines(["one", "two"])
    viewer.set_lines(["one", "two", "three error here"])
    assert viewer.plain_text() == "one\ntwo\nthree error here"
    viewer.search.setText("error")
    assert viewer.find_next() and not viewer.follow.isChecked()
    viewer.copy()
    assert QApplication.clipboard().text() == "error"
    viewer.search.setText("absent")
    assert not viewer.find_next() and viewer.status.text() == "not found"
    viewer.set_lines(["fresh start"])  # the tail rotated: the view is replaced
    assert viewer.plain_text() == "fresh start"


def settings(tmp_path, **changes):
    values = dict(data_root=str(tmp_path / "data"), server_filter="lab", workers=None, token="",
                  dataserver_port=15348, ruleserver_port=15346, nodeserver_port=15347)
    values.update(changes)
    return Settings(**values)


def test_settings_dialog_refuses_invalid_values_and_saves_valid_ones(qtbot, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("other-key: 5\n")
    dialog = QtSettingsDialog(settings(tmp_path), config_file)
    qtbot.addWidget(dialog)
    dialog.ports["ruleserver_port"].setValue(15348)
    dialog.server_filter.setText("bad name!")
    dialog.accept()
    assert dialog.result() != dialog.Accepted and dialog.saved_to is None
    assert not dialog.errors["server_filter"].isHidden()
    assert "differ" in dialog.errors["nodeserver_port"].text()
    dialog.ports["ruleserver_port"].setValue(15346)
    dialog.server_filter.setText("lab2")
    dialog.workers.setValue(4)
    dialog.accept()
    assert dialog.saved_to == config_file
    saved = yaml.safe_load(config_file.read_text())
    assert saved["other-key"] == 5 and saved["dataserver-filter"] == "lab2"
    assert saved["nodeserver-num_workers"] == 4 and "desk-cluster-token" not in saved


def test_gpu_cards_plot_each_gpu_of_a_node_agent_report(qtbot):
    """The per-GPU cards from a node agent's ``/agent/metrics/gpu`` answer as an H100 node sends
    it (this machine has no GPU to report one itself)."""
    from pyme_desk.gui.qt_gpu import QtGpuCard
    from pyme_desk.model.agents import gpu_history, gpu_state

    from dataclasses import asdict

    from pyme_desk.monitor.gpu import GPUInfo, GPUProcess

    def device(i, util, procs):  # as the agent serialises NVML's readings
        return asdict(GPUInfo(index=i, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{i}", utilization_percent=util,
                              memory_used_bytes=20 * 2**30, memory_total_bytes=80 * 2**30, memory_percent=25.0,
                              temperature_c=41.0 + i, power_w=310.5, power_limit_w=700.0,
                              processes=tuple(GPUProcess(4242 + k, "python", 2**30) for k in range(procs))))

    report = {"available": True, "state": "ok", "reason": "2 NVIDIA GPUs (driver 550.54)",
              "devices": [device(0, 87.0, 2), device(1, None, 0)],
              "history": [{"t": t, "gpus": [device(0, 10.0 * t, 2), device(1, 5.0, 0)]} for t in range(1, 31)]}
    state = gpu_state(report)
    history = gpu_history(report["history"])
    assert state.available and [d.index for d in state.devices] == [0, 1]
    cards = [QtGpuCard(d.index) for d in state.devices]
    for card, d in zip(cards, state.devices):
        qtbot.addWidget(card)
        card.update_from(d, history)
    assert cards[0].title() == "GPU 0: NVIDIA H100 80GB HBM3"
    x, y = cards[0].curves["utilization"].getData()
    assert len(y) == 30 and y[-1] == 300.0 and x[-1] == 0
    assert cards[1].curves["power"].getData()[1][-1] == 310.5
    assert cards[0].processes.rowCount() == 2 and cards[0].processes.item(1, 0).text() == "4243"
    assert cards[0].processes.item(0, 2).text() != "" and cards[1].processes.rowCount() == 0
