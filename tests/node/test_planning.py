"""Template filling, bid costs (data locality) and which tasks a round bids on."""
from __future__ import annotations

import json
import time

import pytest

from pyme_desk.node.bidder import choose_bids, make_task
from pyme_desk.node.locality import LOCAL_COST, REMOTE_COST, Locality, task_cost
from pyme_desk.node import taskqueue
from pyme_desk.node.taskqueue import TaskQueue
from pyme_desk.node.tasks import INVALID_TASK_TYPE
from pyme_desk.node.templates import TemplateError, fill_template, split_task_key

LOCALIZATION = json.dumps({
    "id": "{{ruleID}}~{{taskID}}", "type": "localization",
    "taskdef": {"frameIndex": "{{taskID}}", "metadata": "PYME-CLUSTER://clu/s/analysis/a.h5r.json"},
    "inputs": {"frames": "PYME-CLUSTER://clu/s"}})


def test_fill_template_substitutes_ids_and_inputs_textually():
    template = '{"id": "{{ruleID}}~{{taskID}}", "n": {{taskID}}, "f": "{{taskID}}", "inputs": {{taskInputs}}}'
    task = fill_template(template, "000001-ab", 7, {"input": "pyme-cluster:///x.tif"})
    assert task == {"id": "000001-ab~7", "n": 7, "f": "7", "inputs": {"input": "pyme-cluster:///x.tif"}}
    assert fill_template(template, "r", 0)["inputs"] == {}


@pytest.mark.parametrize("template", ['{"id": {{ruleID}}}', '[1, 2]', '{"a": '])
def test_fill_template_refuses_what_is_not_a_json_object(template):
    with pytest.raises(TemplateError, match="rule r1"):
        fill_template(template, "r1", 3)


def test_task_keys_split_on_the_last_tilde():
    assert split_task_key("000003-9f1c~12") == ("000003-9f1c", 12)
    for bad in ("no-tilde", "~5", "r~x"):
        with pytest.raises(ValueError):
            split_task_key(bad)


def test_frames_on_this_nodes_root_are_local(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "frame00003.pzf").write_bytes(b"x")
    here = Locality(tmp_path, "clu")
    task = fill_template(LOCALIZATION, "r", 3)
    assert task_cost(task, here) == LOCAL_COST
    assert task_cost(fill_template(LOCALIZATION, "r", 4), here) == REMOTE_COST  # frame not here
    assert task_cost(task, Locality(tmp_path, "other")) == REMOTE_COST  # another cluster's series
    assert task_cost(task, Locality(None, "clu")) == REMOTE_COST  # no data root
    empty_filter = dict(task, inputs={"frames": "pyme-cluster:///s"})
    assert task_cost(empty_filter, here) == LOCAL_COST


def test_a_series_given_as_a_local_path_holds_every_frame(tmp_path):
    series = tmp_path / "s.h5"
    series.write_bytes(b"x")
    task = {"type": "localization", "taskdef": {"frameIndex": "99"}, "inputs": {"frames": str(series)}}
    assert task_cost(task, Locality(None, "clu")) == LOCAL_COST
    task["taskdef"]["frameIndex"] = "not a number"
    assert task_cost(task, Locality(None, "clu")) == REMOTE_COST


def test_recipe_cost_falls_by_a_factor_per_local_input(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    here = Locality(tmp_path, "clu")
    recipe = {"type": "recipe", "inputs": {"a": "pyme-cluster://clu/a.tif", "b": "pyme-cluster://clu/b.tif"}}
    assert task_cost(recipe, here) == pytest.approx(0.2)
    recipe["inputs"]["__sim"] = "1"
    assert task_cost(recipe, here) == pytest.approx(0.04)
    assert task_cost({"type": "recipe", "inputs": {"b": "pyme-cluster://clu/b.tif"}}, here) == 1.0


def test_a_task_that_reads_nothing_is_local_everywhere():
    assert task_cost({"type": "noop"}, Locality(None, "clu")) == LOCAL_COST
    assert task_cost({"type": "noop", "inputs": {"x": "http://h:1/x"}}, Locality(None, "clu")) == REMOTE_COST


def _advert(rule_id, ids, template=LOCALIZATION):
    return {"ruleID": rule_id, "taskTemplate": template, "availableTaskIDs": list(ids)}


def test_bids_go_to_local_tasks_first_and_skip_held_ones(tmp_path):
    (tmp_path / "s").mkdir()
    for i in (2, 5, 6, 7):
        (tmp_path / "s" / f"frame{i:05d}.pzf").write_bytes(b"x")
    queue = TaskQueue()
    queue.put([{"id": "r~5"}])
    bids = choose_bids([_advert("r", range(10))], 2, Locality(tmp_path, "clu"), queue, allow_nonlocal=True)
    assert bids == [{"ruleID": "r", "taskIDs": [2, 6], "costs": [LOCAL_COST, LOCAL_COST]}]


def test_non_local_tasks_only_when_there_are_no_local_ones_and_it_is_allowed(tmp_path):
    queue = TaskQueue()
    adverts = [_advert("r1", [0, 1]), _advert("r2", [0, 1, 2])]
    bids = choose_bids(adverts, 4, Locality(tmp_path, "clu"), queue, allow_nonlocal=True)
    assert bids == [{"ruleID": "r1", "taskIDs": [0, 1], "costs": [1.0, 1.0]},
                    {"ruleID": "r2", "taskIDs": [0, 1], "costs": [1.0, 1.0]}]
    assert choose_bids(adverts, 4, Locality(tmp_path, "clu"), queue, allow_nonlocal=False) == []
    assert choose_bids("not a list", 4, Locality(tmp_path, "clu"), queue, allow_nonlocal=True) == []


def test_an_unusable_template_becomes_a_task_that_fails_with_the_reason():
    task = make_task('{"id": {{ruleID}}', "r9", 4, None)
    assert task["id"] == "r9~4" and task["type"] == INVALID_TASK_TYPE
    assert "not valid JSON" in task["error"]
    assert make_task('{"type": "noop"}', "r9", 4, None) == {"type": "noop", "id": "r9~4"}


def test_with_a_random_source_bids_are_drawn_from_the_oldest_candidates(tmp_path):
    import random

    adverts = [_advert("r", range(1000), template='{"id": "{{ruleID}}~{{taskID}}", "type": "noop"}')]
    drawn = set()
    for seed in range(5):
        bids = choose_bids(adverts, 50, Locality(None, "clu"), TaskQueue(), True, random.Random(seed))
        ids = bids[0]["taskIDs"]
        assert len(ids) == 50 and ids == sorted(ids) and max(ids) < 100  # within the oldest 2 x want
        drawn.update(ids)
    assert len(drawn) > 50  # different nodes would not all race for the same tasks


def test_tasks_lost_to_another_node_are_not_bid_on_again_at_once():
    queue = TaskQueue()
    queue.note_lost(["r~0", "r~1"])
    bids = choose_bids([_advert("r", range(4), template='{"type": "noop"}')], 10, Locality(None, "c"), queue, True)
    assert bids[0]["taskIDs"] == [2, 3]


def test_tasks_lost_to_another_node_are_bid_on_again_later_even_when_nothing_else_happens(monkeypatch):
    """A node that lost bids and then went idle must still take those tasks once they come back
    (returned by a stopping node, or re-queued)."""
    monkeypatch.setattr(taskqueue, "RECENT_S", 0.05)
    queue = TaskQueue()
    queue.note_lost(["r~0", "r~1"])
    assert queue.known("r~0")
    time.sleep(0.1)
    assert not queue.known("r~0") and not queue.known("r~1")
