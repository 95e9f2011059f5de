"""The desktop control center (PyQt5 + pyqtgraph): a thin view over :mod:`pyme_desk.model`.

The only package of pyme-desk that imports Qt.  Modules are named ``qt_<thing>.py`` and hold
``Qt<Thing>`` classes; the panels are listed in one table, :mod:`pyme_desk.gui.panels`.
"""
