"""The rule server: hands out analysis tasks over PYME's rule-server protocol (protocol.md §7).

``RuleServer`` is a plain object like the data server: ``start()`` returns once it listens,
``url`` says where, ``stop()`` finishes the requests in flight, writes the journal and
unregisters.  The CLI (``pyme-desk ruleserver``), the tests and the benchmark use it alike.

HTTP API
========

Every endpoint answers GET and POST alike, reads parameters from the query string and a JSON
body (optionally ``Content-Encoding: gzip``) on either method, and gzips responses of 1 KiB or
more for clients that send ``Accept-Encoding: gzip``.  Errors are ``{"error": "<reason>"}``
with a 4xx status (400 malformed parameter/body, 404 unknown rule or path, 409 conflict);
never a 500 traceback.  ``"ok": "True"`` is a *string* where PYME sends one (PYME clients
test truthiness, so ``"False"`` is truthy too: read the other fields).

PYME's endpoints (same shapes as PYME)
--------------------------------------
``/add_integer_id_rule?max_tasks=N&release_start=a&release_end=b&ruleID=ID&timeout=T``
    body ``{"template": "<string>", "inputsByTask": {"<id>": {...}}, "on_completion": {...}}``;
    only ``template`` (a string, stored and handed back verbatim) is required.  ``max_tasks``
    defaults to 1e6 (int or float text), ``timeout`` (rule inactivity expiry, s) to 3600;
    ``release_start``/``release_end`` release ``[a, b)`` at once.  ``ruleID`` is optional
    (must not contain ``~``; 409 if it exists); generated IDs are ``%06d-<32 hex>``.
    -> ``{"ok": "True", "ruleID": "000001-9f1c..."}``
``/release_rule_tasks?ruleID=ID&release_start=a&release_end=b``
    tasks ``[a, b)`` not yet released become available (0 <= a <= b <= max_tasks, else 400;
    409 after ``mark_release_complete``).  -> ``{"ok": "True"}``
``/mark_release_complete?ruleID=ID[&n_tasks=N]``
    no more releases; the rule finishes once ``N`` tasks (default: the highest released task
    ID + 1) are complete or failed.  -> ``{"ok": "True"}``
``/inactivate_rule?ruleID=ID``
    stop advertising and awarding the rule's tasks (abort); hand-ins are still counted.
    -> ``{"ok": "True"}``
``/task_advertisements[?nodeID=N]``
    -> ``[{"ruleID": ID, "taskTemplate": "<template>", "availableTaskIDs": [0, 1, ...],
    "inputsByTask": {"<id>": {...}}}, ...]`` (``inputsByTask`` only when the rule has one,
    restricted to the listed IDs).  Active rules in creation order, task IDs ascending
    (oldest first), whole rules until 30,000 IDs are listed.  Rebuilt at most every 0.25 s.
``/bid_on_tasks[?nodeID=N]``
    body ``[{"ruleID": ID, "taskIDs": [int, ...], "costs": [float, ...]}, ...]`` (``costs``
    optional, default 1.0 each; a bid may also carry ``"nodeID"``).
    -> ``[{"ruleID": ID, "taskIDs": [awarded ints, ascending], "template": "<template>"}, ...]``,
    one entry per bid, in order.  A bid on an unknown, expired or inactive rule gets
    ``"template": ""`` and no IDs (not an error: rules come and go between advert and bid).
    If every cost of every bid in the request is < 0.2 the tasks still available are awarded
    at once ("buy now"); otherwise the request joins an auction that closes 0.2 s after its
    first bid (other requests are served meanwhile): per task the lowest cost wins, ties go to
    the earliest bid, and a node gets at most a fair share of a rule's non-local (cost >= 0.2)
    tasks: ``ceil((available + assigned) / live bidders) - already assigned to it``, where
    live bidders are the nodes that fetched adverts or bid in the last 3 s.
``/handin[?nodeID=N]``
    body ``[{"ruleID": ID, "taskIDs": [int, ...], "status": [3 | 4 per ID]}, ...]``
    (3 = complete, 4 = failed; ``status`` may also be a single int for all IDs; optional
    ``"reasons": [str | null per ID]`` explains failures).
    -> ``{"ok": "True"}``, or ``{"ok": "False", "error": "unknown rules: [...]"}`` when some
    rules do not exist (the others are still applied).  Every task is counted exactly once
    as completed or failed: the first hand-in that ends a task wins, later ones are counted as
    duplicates; a success handed in late (after the task was re-queued or re-assigned) still
    completes the task; a failure from a node the task was taken away from is ignored.
``/distributor/queues``
    -> ``{"ok": true, "result": {"<ruleID>": {"tasksPosted", "tasksRunning",
    "tasksCompleted", "tasksFailed", "averageExecutionCost", "active", "tasksTimedOut",
    "tasksCompleteAfterTimeout", "finished", "expired"}}}`` (cached up to 0.5 s).
``/queue_info_longpoll``
    the same after 0.5 s (waits without holding up other requests).
``/``
    an HTML status page for browsers (``Accept: text/html``), else the ``/status`` JSON.

pyme-desk additions
-------------------
Node identity: a node server should pass ``nodeID=<id>`` on ``task_advertisements``,
``bid_on_tasks``, ``handin`` and ``node_heartbeat``.  The ID must be unique per node-server
*process run* (e.g. ``<computer>:<pid>:<start time>``), so a restarted node does not inherit
the leases of its dead predecessor.  Without ``nodeID`` (PYME node servers) the node is
identified by its IP address and its tasks are recovered only by the task time-out.

``/node_heartbeat?nodeID=N``
    -> ``{"ok": true, "nodeID": N, "heartbeatInterval": 1.0, "leaseTimeout": 6.0,
    "tasksAssigned": <tasks this node holds>}``.  Once a node has sent one heartbeat it holds
    a *lease*: if no heartbeat (or other request carrying its ``nodeID``) arrives for
    ``leaseTimeout`` seconds, all tasks assigned to it are re-queued (counted in
    ``tasksTimedOut``).  Send one every ``heartbeatInterval`` seconds.
Task time-out: a task assigned for longer than the task time-out (``--task-timeout``, default
600 s) is re-queued whether or not its node heart-beats.  A task re-queued more than
``ruleserver-retries`` times (default 1) becomes FAILED with a reason.
``/status``
    JSON for the GUI: ``{"ok": true, "server": {...settings, uptime, journal}, "rates":
    {"assigned", "completed", "failed"} (tasks/s over the last 10 s), "rules": [{"ruleID",
    "created", "maxTasks", "released", "releaseComplete", "template" (first 200 chars),
    "nodes": {nodeID: tasks assigned}, "failureReasons": {reason: count}, ...the queue info
    fields...}], "nodes": [{"nodeID", "address", "heartbeats", "alive", "lastSeen" (s ago),
    "tasksAssigned", "tasksCompleted", "tasksFailed"}]}``.
"""
from __future__ import annotations
