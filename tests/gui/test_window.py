"""The main window over a real cluster of one: panels, services, files, nodes, closing."""
import socket

from PyQt5.QtWidgets import QMessageBox

from pyme_desk.gui.panels import PANELS
from pyme_desk.storage.server import DataServer

WAIT_MS = 10000


def table_column(table, col):
    return [table.item(r, col).text() if table.item(r, col) else "" for r in range(table.rowCount())]


def test_window_comes_up_with_every_panel(window):
    assert window.tabs.count() == len(PANELS)
    assert [type(window.tabs.widget(i)) for i in range(window.tabs.count())] == [p for p, _ in PANELS]
    assert set(window.panels) == {"services", "nodes", "gpu", "files", "acquisition"}


def state_of(panel, name):
    names = table_column(panel.table, 0)
    return panel.table.item(names.index(name), 2).text() if name in names else None


def test_status_bar_shows_cluster_health(qtbot, window, desk):
    n = len(desk.services.snapshot())
    qtbot.waitUntil(lambda: f"services {n}/{n} ready" in window.health.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "nodes 1/1 healthy" in window.health.text(), timeout=WAIT_MS)


def test_services_panel_stops_and_restarts_the_data_server(qtbot, window, desk):
    panel = window.panels["services"]
    qtbot.waitUntil(lambda: state_of(panel, "dataserver") == "ready", timeout=WAIT_MS)
    port = int(desk.local_urls()[0].rsplit(":", 1)[1].strip("/"))
    panel.select("dataserver")
    panel.buttons["stop"].click()
    qtbot.waitUntil(lambda: state_of(panel, "dataserver") == "stopped", timeout=WAIT_MS)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the data server still accepts connections"
    panel.select("dataserver")
    panel.buttons["start"].click()
    qtbot.waitUntil(lambda: state_of(panel, "dataserver") == "ready", timeout=WAIT_MS)
    assert "serving" in panel.log.plain_text() or "ready" in panel.log.plain_text()


def test_files_panel_lists_a_spooled_series_and_shows_its_frames(qtbot, window, desk):
    acquisition = desk.simulate("runs/cells", n_frames=12, frame_rate=500, width=32, height=32)
    assert acquisition.wait(30) and acquisition.snapshot().state == "complete", acquisition.snapshot().error
    panel = window.panels["files"]
    panel.open("runs")
    qtbot.waitUntil(lambda: table_column(panel.table, 0) == ["cells"], timeout=WAIT_MS)
    assert table_column(panel.table, 1) == ["series (complete)"]
    assert [panel.crumbs.itemAt(i).widget().text() for i in range(panel.crumbs.count() - 1)] == ["/", "runs"]
    panel.table.selectRow(0)
    qtbot.waitUntil(lambda: "12 frames, complete" in panel.summary.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.viewer.image is not None, timeout=WAIT_MS)
    assert panel.viewer.image.shape == (32, 32)
    assert '"Camera.ROIWidth": 32' in panel.metadata.toPlainText()
    first = panel.viewer.image.copy()
    panel.show_frame(11)
    qtbot.waitUntil(lambda: not (panel.viewer.image == first).all(), timeout=WAIT_MS)
    panel.show_frame(12)
    qtbot.waitUntil(lambda: "has no frame 12" in panel.message.text(), timeout=WAIT_MS)


def test_files_panel_upload_and_download(qtbot, window, tmp_path):
    panel = window.panels["files"]
    source = tmp_path / "notes.txt"
    source.write_bytes(b"hello cluster\n" * 1000)
    panel.upload(source)
    qtbot.waitUntil(lambda: "notes.txt" in table_column(panel.table, 0), timeout=WAIT_MS)
    # listings carry no dates: the selected file's comes from one HEAD request
    panel.table.selectRow(table_column(panel.table, 0).index("notes.txt"))
    qtbot.waitUntil(lambda: ", modified 20" in panel.summary.text(), timeout=WAIT_MS)
    row = table_column(panel.table, 0).index("notes.txt")
    assert panel.table.item(row, 3).text() in panel.summary.text()
    panel.download("notes.txt", tmp_path / "back.txt")
    qtbot.waitUntil(lambda: (tmp_path / "back.txt").exists(), timeout=WAIT_MS)
    assert (tmp_path / "back.txt").read_bytes() == source.read_bytes()
    assert panel.progress.value() == panel.progress.maximum()
    panel.upload(source)  # the name exists now: a readable refusal, not a traceback
    qtbot.waitUntil(lambda: panel.message.text().startswith("upload failed:"), timeout=WAIT_MS)
    assert "Traceback" not in panel.message.text()


def test_nodes_panel_shows_the_local_node_then_an_attached_one_that_dies(qtbot, window, desk, tmp_path):
    panel = window.panels["nodes"]
    local = desk.local_urls()[0]
    qtbot.waitUntil(lambda: table_column(panel.table, 1) == [local], timeout=WAIT_MS)
    assert table_column(panel.table, 2) == ["healthy"]
    second_root = tmp_path / "second"
    with DataServer(second_root, status_interval=0.2) as second:
        panel.address.setText(second.url)
        panel.attach()
        qtbot.waitUntil(lambda: second.url in table_column(panel.table, 1), timeout=WAIT_MS)
        row = table_column(panel.table, 1).index(second.url)
        qtbot.waitUntil(lambda: panel.table.item(row, 2).text() == "healthy", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: panel.table.item(row, 2).text().startswith("unreachable"), timeout=WAIT_MS)
    assert desk.attached.urls() == [second.url]
    panel.table.selectRow(row)
    panel.detach()
    qtbot.waitUntil(lambda: second.url not in table_column(panel.table, 1), timeout=WAIT_MS)


def test_nodes_panel_refuses_a_bad_address(qtbot, window):
    panel = window.panels["nodes"]
    panel.address.setText("not a url at all")
    panel.attach()
    qtbot.waitUntil(lambda: "is not a node address" in panel.message.text(), timeout=WAIT_MS)
    with socket.socket() as s:  # a free port: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    panel.address.setText(f"127.0.0.1:{port}")
    panel.attach()
    qtbot.waitUntil(lambda: panel.message.text().startswith("cannot attach: "), timeout=WAIT_MS)
    assert "cannot connect" in panel.message.text() and "Traceback" not in panel.message.text()
    assert window.desk.attached.urls() == []


def test_gpu_panel_explains_missing_gpus_or_plots_them(qtbot, window):
    panel = window.panels["gpu"]
    qtbot.waitUntil(lambda: panel.node.count() == 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(panel.message.text()), timeout=WAIT_MS)
    from pyme_desk.monitor.gpu import gpu_snapshot
    if gpu_snapshot().available:
        qtbot.waitUntil(lambda: len(panel.cards) == len(gpu_snapshot().gpus), timeout=WAIT_MS)
    else:
        assert panel.message.text().startswith("no GPU on this node: ")
        assert not panel.cards


def test_closing_stops_the_local_cluster(qtbot, window, desk):
    port = int(desk.local_urls()[0].rsplit(":", 1)[1].strip("/"))
    window.close()
    assert window.stopped
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_closing_during_an_acquisition_asks_first(qtbot, window, desk, monkeypatch):
    desk.simulate("runs/long", n_frames=100000, frame_rate=50, width=16, height=16)
    qtbot.waitUntil(lambda: desk.busy() != [], timeout=WAIT_MS)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.No)
    window.close()
    assert asked and not window.stopped and desk.services.snapshot()[0].state == "ready"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    window.close()
    assert window.stopped


def test_nodes_panel_shows_workers_tasks_and_the_rule_servers_nodes(qtbot, window, desk):
    if desk.analysis_unavailable():
        import pytest
        pytest.skip(desk.analysis_unavailable())
    panel = window.panels["nodes"]
    local = desk.local_urls()[0]

    def local_row():
        return table_column(panel.table, 1).index(local) if local in table_column(panel.table, 1) else None

    # one worker (the desk fixture asks for one), read from the node server's /node/status
    qtbot.waitUntil(lambda: local_row() is not None
                    and panel.table.item(local_row(), 8).text() in ("1 idle", "1 busy", "1 starting"), timeout=WAIT_MS)
    assert panel.table.item(local_row(), 9).text() in ("n/a", "0.0")  # nothing analysed: no tasks/s yet
    # the rule server lists the node server once it has asked for work, under the same node ID
    node_id = desk.latest("nodes").value.by_url(local).node_id
    assert node_id
    qtbot.waitUntil(lambda: node_id in table_column(panel.rules, 0), timeout=WAIT_MS)
    row = table_column(panel.rules, 0).index(node_id)
    assert panel.rules.item(row, 2).text() == "yes"
    qtbot.waitUntil(lambda: panel.table.item(local_row(), 10).text() == "0", timeout=WAIT_MS)
