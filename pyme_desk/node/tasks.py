"""Task types a worker can run, and how a failed task is reported.

A task type is a function ``run(task, context)`` that does the work of one task description
(a dict, protocol.md §7.4) and returns normally on success.  It raises :class:`TaskFailed` for
a failure it can explain in one message, or any other exception (then the traceback goes into
the report).  Types are found, in this order, later ones replacing earlier ones:

1. the built-ins: ``noop`` (tests and benchmarks), ``localization`` (a clear "not available"
   failure until an analysis package registers the real one) and ``recipe`` (not supported);
2. entry points of the group :data:`ENTRY_POINT_GROUP` (``pyme_desk.task_types``), each naming
   a ``run`` function, e.g. ``localization = "pyme_desk.localization.task:run"``;
3. :func:`register_task_type` calls made in the worker process.

A failed task's report (the task description and the reason) is appended, as PYME's workers do,
to ``LOGS/rules/<ruleID>.log`` and ``.html`` on a data server of the task's cluster through
``__aggregate_txt`` (§8.4), so the user can read why.
"""
from __future__ import annotations

import html
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Mapping

from pyme_desk.cluster import ClusterClient
from pyme_desk.cluster.errors import ClusterError, InvalidNameError
from pyme_desk.cluster.uris import is_cluster_uri, parse_cluster_uri
from pyme_desk.node.templates import split_task_key

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pyme_desk.task_types"
#: The type a node server gives a task whose template could not be filled in; it always fails.
INVALID_TASK_TYPE = "pyme-desk-invalid-task"
#: The longest a ``noop`` task may be asked to sleep (s).
MAX_NOOP_SLEEP = 60.0


class TaskFailed(Exception):
    """A task could not be done, for a reason the message explains to the user."""


@dataclass
class TaskContext:
    """What a task type may use: who runs it and how to reach the cluster's data servers.

    ``servers`` (None: discover them) are the data servers of the node's cluster
    ``server_filter``; ``data_root`` is this node's own data root, read directly when it holds a
    file.  :meth:`cluster` gives a shared client for a cluster name.
    """

    node_name: str
    worker_id: str
    server_filter: str
    servers: list[str] | None = None
    data_root: Path | None = None
    _clients: dict[str, ClusterClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cluster(self, server_filter: str | None = None) -> ClusterClient:
        """The client for cluster ``server_filter`` (default: the node's), created on first use."""
        name = self.server_filter if server_filter in (None, "") else server_filter
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                servers = self.servers if name == self.server_filter and self.servers else None
                client = ClusterClient(servers, server_filter=name,
                                       local_root=self.data_root if name == self.server_filter else None)
                self._clients[name] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


TaskRunner = Callable[[dict, TaskContext], None]


def run_noop(task: dict, context: TaskContext) -> None:
    """Do nothing, optionally sleeping ``taskdef.sleep`` seconds, and, when ``outputs.log`` names
    an aggregate text file, append the line ``<task id> <node name>`` to it (which node ran what)."""
    taskdef = task.get("taskdef") if isinstance(task.get("taskdef"), Mapping) else {}
    delay = taskdef.get("sleep", 0)
    if not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_NOOP_SLEEP:
        raise TaskFailed(f"noop: taskdef.sleep must be a number of seconds in [0, {MAX_NOOP_SLEEP:g}], "
                         f"not {delay!r}")
    if delay:
        time.sleep(delay)
    outputs = task.get("outputs") if isinstance(task.get("outputs"), Mapping) else {}
    target = outputs.get("log")
    if target:
        _client_for(target, context).file_results(target, f"{task.get('id')} {context.node_name}\n")


def run_localization_unavailable(task: dict, context: TaskContext) -> None:
    raise TaskFailed("localization analysis is not available on this node: no package providing the "
                     f"'localization' task type (entry point group {ENTRY_POINT_GROUP!r}) is installed")


def run_recipe_unsupported(task: dict, context: TaskContext) -> None:
    raise TaskFailed("recipe tasks are not supported by pyme-desk workers; run this recipe with PYME")


def run_invalid(task: dict, context: TaskContext) -> None:
    raise TaskFailed(str(task.get("error") or "the task description is invalid"))


BUILTIN_TYPES: dict[str, TaskRunner] = {
    "noop": run_noop,
    "localization": run_localization_unavailable,
    "recipe": run_recipe_unsupported,
    INVALID_TASK_TYPE: run_invalid,
}

_registered: dict[str, TaskRunner] = {}


def register_task_type(name: str, run: TaskRunner) -> None:
    """Make ``name`` run with ``run`` in this process (replacing a built-in or plugin)."""
    _registered[name] = run


def _plugin_loader(entry_point) -> TaskRunner:
    """A runner that loads the plugin when first used; a broken plugin fails its tasks clearly."""
    loaded: list[TaskRunner] = []

    def run(task: dict, context: TaskContext) -> None:
        if not loaded:
            try:
                loaded.append(entry_point.load())
            except Exception as e:
                raise TaskFailed(f"the {entry_point.name!r} task type ({entry_point.value}) "
                                 f"cannot be loaded: {type(e).__name__}: {e}") from None
        loaded[0](task, context)

    return run


def load_task_types() -> dict[str, TaskRunner]:
    """Every task type this process can run, by name (see the module docstring)."""
    types = dict(BUILTIN_TYPES)
    try:
        plugins = entry_points(group=ENTRY_POINT_GROUP)
    except Exception as e:  # a broken installed distribution must not stop the built-ins
        log.warning("cannot read the %s entry points: %s", ENTRY_POINT_GROUP, e)
        plugins = ()
    for ep in plugins:
        types[ep.name] = _plugin_loader(ep)
    types.update(_registered)
    return types


def run_task(task: dict, context: TaskContext, types: Mapping[str, TaskRunner]) -> None:
    """Run one task with the runner of its type; TaskFailed for an unknown type."""
    kind = task.get("type")
    runner = types.get(kind) if isinstance(kind, str) else None
    if runner is None:
        known = ", ".join(sorted(t for t in types if t != INVALID_TASK_TYPE))
        raise TaskFailed(f"unknown task type {kind!r}; this node runs: {known}")
    runner(task, context)


# -- failure reports --------------------------------------------------------------------------

def failure_report(task: Mapping[str, Any], error: BaseException, node_name: str) -> str:
    """The text appended to the rule's log for one failed task."""
    if isinstance(error, TaskFailed):
        reason = str(error)
    else:
        reason = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    description = json.dumps(task, indent=2, sort_keys=True, default=str)
    return (f"=== task {task.get('id')} failed on {node_name} at {stamp} ===\n"
            f"{reason}\n--- task ---\n{description}\n\n")


def _task_cluster(task: Mapping[str, Any], fallback: str) -> str:
    """The cluster a task works on: that of its first cluster-URI input, else ``fallback``."""
    inputs = task.get("inputs")
    for uri in (inputs.values() if isinstance(inputs, Mapping) else ()):
        if isinstance(uri, str) and is_cluster_uri(uri):
            try:
                return parse_cluster_uri(uri).server_filter or fallback
            except InvalidNameError:
                continue
    return fallback


def _client_for(uri: str, context: TaskContext) -> ClusterClient:
    if is_cluster_uri(uri):
        return context.cluster(parse_cluster_uri(uri).server_filter)
    return context.cluster()


def file_failure_report(task: Mapping[str, Any], report: str, context: TaskContext) -> bool:
    """Append ``report`` to ``LOGS/rules/<ruleID>.log`` (and ``.html``) of the task's cluster.

    Returns False, after logging why, when no data server took it: a missing log must never
    stop the failure from being handed in.
    """
    try:
        rule_id, _ = split_task_key(str(task.get("id")))
    except ValueError:
        log.warning("task %r failed and has no rule to log to:\n%s", task.get("id"), report)
        return False
    name = _task_cluster(task, context.server_filter)
    base = f"pyme-cluster://{name}/__aggregate_txt/LOGS/rules/{rule_id}"
    try:
        client = context.cluster(name)
        client.file_results(base + ".log", report)
        client.file_results(base + ".html", f"<pre>{html.escape(report)}</pre>\n")
        return True
    except (ClusterError, InvalidNameError, OSError) as e:
        log.warning("could not write the failure report of task %s to cluster %r: %s\n%s",
                    task.get("id"), name, e, report)
        return False
