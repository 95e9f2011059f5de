"""Getting work off the GUI thread and results back onto it.

* :class:`QtPollBridge` turns a desk poller's callbacks (on the poller's thread) into a Qt
  signal, delivered queued on the GUI thread.
* :func:`run_task` runs one blocking call on the global QThreadPool and delivers its result,
  its failure (a readable one-line message) or its progress as signals.
"""
from __future__ import annotations

from typing import Any, Callable

from PyQt5.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal

from pyme_desk.model.errors import describe


class QtPollBridge(QObject):
    """Re-emits every :class:`~pyme_desk.model.poller.PollResult` of one desk poller as ``result``."""

    result = pyqtSignal(object)

    def __init__(self, desk, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._alive = True
        self.destroyed.connect(self._on_destroyed)
        desk.listen(name, self._forward)

    def _forward(self, result) -> None:
        if self._alive:
            try:
                self.result.emit(result)
            except RuntimeError:  # the bridge was deleted between the check and the emit
                self._alive = False

    def _on_destroyed(self) -> None:
        self._alive = False


class _TaskSignals(QObject):
    done = pyqtSignal(object)
    failed = pyqtSignal(str)
    progress = pyqtSignal(int, int)


class QtTask(QRunnable):
    """One blocking call on a pool thread.  Connect to ``signals`` before starting it."""

    def __init__(self, fn: Callable[..., Any], *args: Any, with_progress: bool = False) -> None:
        super().__init__()
        self.signals = _TaskSignals()
        self._fn, self._args, self._with_progress = fn, args, with_progress

    def run(self) -> None:
        try:
            if self._with_progress:
                value = self._fn(*self._args, progress=self._emit_progress)
            else:
                value = self._fn(*self._args)
        except Exception as exc:  # reported in the window as a message, never a traceback
            self._emit(self.signals.failed, describe(exc))
        else:
            self._emit(self.signals.done, value)

    def _emit_progress(self, done: int, total: int) -> None:
        self._emit(self.signals.progress, int(done), int(total))

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver went away (window closed): nothing to tell
            pass


def run_task(fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[str], None] | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> QtTask:
    """Run ``fn(*args)`` on the global QThreadPool; callbacks run on the GUI thread.

    With ``on_progress``, ``fn`` is called with a ``progress(done, total)`` keyword argument.
    """
    task = QtTask(fn, *args, with_progress=on_progress is not None)
    if on_done is not None:
        task.signals.done.connect(on_done)
    if on_error is not None:
        task.signals.failed.connect(on_error)
    if on_progress is not None:
        task.signals.progress.connect(on_progress)
    QThreadPool.globalInstance().start(task)
    return task
