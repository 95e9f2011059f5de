"""The Qt-free state the desktop GUI shows: immutable snapshots and the threads that poll them.

Nothing here imports Qt.  Every poll runs on a daemon thread (:class:`~.poller.Poller`) and
hands an immutable snapshot, or a readable error, to a callback; the GUI turns those callbacks
into Qt signals and only ever draws what it was handed.
"""
