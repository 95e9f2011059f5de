"""The panels of the main window, in tab order: (class, refresh period in ms).  Adding a panel
is one line here."""
from __future__ import annotations

from pyme_desk.gui.qt_acquisition import QtAcquisitionPanel
from pyme_desk.gui.qt_files import QtFilesPanel
from pyme_desk.gui.qt_gpu import QtGpuPanel
from pyme_desk.gui.qt_nodes import QtNodesPanel
from pyme_desk.gui.qt_services import QtServicesPanel

PANELS = (
    (QtServicesPanel, 500),
    (QtNodesPanel, 1000),
    (QtGpuPanel, 1000),
    (QtFilesPanel, 1000),
    (QtAcquisitionPanel, 250),
)
