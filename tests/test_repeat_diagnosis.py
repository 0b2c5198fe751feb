"""tools/repeat_diagnosis.py: where a run loses its repeat targets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mirkit.evaluation.protocol import load_targets, per_target, run_ranks, slices
from mirkit.serving.runs import TrainedRun

TOOL = Path(__file__).resolve().parents[1] / "tools" / "repeat_diagnosis.py"
spec = importlib.util.spec_from_file_location("repeat_diagnosis", TOOL)
repeat_diagnosis = importlib.util.module_from_spec(spec)
spec.loader.exec_module(repeat_diagnosis)


def test_roc_auc_counts_pairs_and_ties_half():
    positive = np.array([True, True, False, False])
    assert repeat_diagnosis.roc_auc(np.array([4.0, 3.0, 2.0, 1.0]), positive) == 1.0
    assert repeat_diagnosis.roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), positive) == 0.0
    assert repeat_diagnosis.roc_auc(np.ones(4), positive) == 0.5
    assert repeat_diagnosis.roc_auc(np.array([4.0, 1.0, 2.0, 3.0]), positive) == 0.5


def test_repeat_share_of_a_history():
    assert repeat_diagnosis.repeat_share(np.array([1, 2, 1, 1])) == 0.5
    assert repeat_diagnosis.repeat_share(np.array([5, 6, 7])) == 0.0


def test_diagnosis_agrees_with_the_evaluation(indexed_run):
    run = TrainedRun.open(indexed_run)
    report = repeat_diagnosis.diagnose(run, "val")
    targets = load_targets(run, run.shards(), "val")
    repeat = slices(targets)["repeat"]
    assert report["targets"] == len(targets.items) and report["repeat targets"] == repeat.sum()
    ranks, _ = run_ranks(run, targets, exclude_seen=False)
    model = per_target(ranks[repeat])["NDCG@10"].mean()
    assert abs(report["repeats NDCG@10, model"] - model) < 1e-9  # the same ranking
    # among the user's own tracks a target can only rank higher than among all items
    within = report["repeats NDCG@10, the model's order within the history"]
    assert within >= report["repeats NDCG@10, model"]
    assert 0.0 <= report["repeat targets with an unplayed track above"] <= 1.0
    for name in ("the model's mass on the history", "the repeat share of the last 50 plays"):
        assert 0.0 <= report[f"AUC of repeat-or-not, {name}"] <= 1.0
