"""Validation by full ranking over the catalogue, beside the baselines of `mirkit eval`.

The model's ranks come from `mirkit.evaluation.model_ranks` and the baselines' from
`mirkit.evaluation.baseline_ranks`, the functions `mirkit eval` uses, so validation and
test numbers are the same computation on other rows. The baselines do not change while
training, so they are ranked once. With several ranks each ranks 1/W of the targets (the
catalogue table, embedded 1/W per rank by `mirkit.serving.index.embed_catalogue`, is summed by
the loop); the ranks are gathered so that every rank holds the same report."""

from __future__ import annotations

import numpy as np
import torch

from mirkit.data.plays import Split
from mirkit.distributed import ONE_PROCESS, World, all_gather_objects
from mirkit.evaluation.metrics import ranking_report
from mirkit.evaluation.protocol import Targets, baseline_ranks, model_ranks, targets_of
from mirkit.models.two_tower import TwoTower

KS = (10, 20, 50)


def validation_targets(split: Split, n_items: int, limit: int, seed: int) -> Targets:
    """The validation targets, at most `limit` of them (a fixed random subset)."""
    rows = split.val_rows
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    return targets_of(split, rows, n_items)


def baseline_reports(targets: Targets, exclude_seen: bool) -> dict[str, dict]:
    ranks, _ = baseline_ranks(targets, exclude_seen, top_k=0)
    return {name: ranking_report(r, ks=KS) for name, r in ranks.items()}


def evaluate(
    model: TwoTower,
    targets: Targets,
    items: torch.Tensor,
    exclude_seen: bool = False,
    world: World = ONE_PROCESS,
    baselines: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Full-ranking metrics of the model on the targets, then `baselines` (the reports of
    `baseline_reports`; computed here when not given)."""
    rows = targets.rows[world.rank :: world.size]
    model.eval()
    ranks, _ = model_ranks(model.user_tower, targets.split, rows, items, exclude_seen)
    ranks = np.concatenate(all_gather_objects(world, ranks))
    if baselines is None:
        baselines = baseline_reports(targets, exclude_seen)
    return {"model": ranking_report(ranks, ks=KS)} | baselines
