"""Turn a rule's task template into one task description (protocol.md §7.4).

A template is a string holding JSON with three placeholders that are replaced as text:
``{{ruleID}}``, ``{{taskID}}`` (the decimal task number) and ``{{taskInputs}}`` (the JSON object
of that task's ``inputsByTask`` entry, ``{}`` when it has none).  Only then is it parsed.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

#: Separates the rule ID from the task number in a task's ``id`` (``<ruleID>~<taskID>``).
ID_SEPARATOR = "~"


class TemplateError(ValueError):
    """The template does not give a JSON object once its placeholders are filled in."""


def fill_template(template: str, rule_id: str, task_id: int,
                  inputs: Mapping[str, Any] | None = None) -> dict:
    """The task description for task ``task_id`` of rule ``rule_id``; TemplateError if not JSON."""
    text = (template.replace("{{ruleID}}", rule_id)
            .replace("{{taskID}}", str(int(task_id)))
            .replace("{{taskInputs}}", json.dumps(dict(inputs or {}))))
    try:
        task = json.loads(text)
    except ValueError as e:
        raise TemplateError(f"the task template of rule {rule_id} is not valid JSON once filled in "
                            f"for task {task_id}: {e}") from None
    if not isinstance(task, dict):
        raise TemplateError(f"the task template of rule {rule_id} gives a JSON "
                            f"{type(task).__name__}, not an object")
    return task


def task_key(rule_id: str, task_id: int) -> str:
    """The task ``id`` PYME uses: ``<ruleID>~<taskID>``."""
    return f"{rule_id}{ID_SEPARATOR}{int(task_id)}"


def split_task_key(key: str) -> tuple[str, int]:
    """``(ruleID, taskID)`` from ``<ruleID>~<taskID>``; ValueError for anything else."""
    rule_id, sep, number = str(key).rpartition(ID_SEPARATOR)
    if not sep or not rule_id:
        raise ValueError(f"task id {key!r} is not of the form <ruleID>~<taskID>")
    try:
        return rule_id, int(number)
    except ValueError:
        raise ValueError(f"task id {key!r} does not end in a task number") from None
