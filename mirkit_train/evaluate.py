"""Validation by full ranking over the catalogue, beside the most-popular baseline.

With several ranks each ranks 1/W of the targets (the catalogue table, embedded 1/W per
rank by `mirkit.index.embed_catalogue`, is summed by the loop); the ranks are gathered
so that every rank holds the same report."""

from __future__ import annotations

import numpy as np
import torch

from mirkit.baselines import popularity
from mirkit.data.plays import Split
from mirkit.distributed import ONE_PROCESS, World, all_gather_objects
from mirkit.metrics import rank_in_blocks, ranking_report
from mirkit.models.two_tower import TwoTower


@torch.no_grad()
def user_embeddings(
    model: TwoTower,
    split: Split,
    rows: np.ndarray,
    max_len: int,
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        histories = np.stack(
            [split.history(int(r), max_len) for r in rows[start : start + batch_size]]
        )
        out.append(model.users(torch.from_numpy(histories).to(device)).float())
    return torch.cat(out) if out else torch.zeros(0, model.config.dim, device=device)


def validation_rows(split: Split, limit: int, seed: int) -> np.ndarray:
    """The validation targets, at most `limit` of them (a fixed random subset)."""
    rows = split.val_rows
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    return rows


def evaluate(
    model: TwoTower,
    split: Split,
    rows: np.ndarray,
    items: torch.Tensor,
    n_items: int,
    max_len: int,
    exclude_seen: bool = False,
    world: World = ONE_PROCESS,
) -> dict[str, dict]:
    """Full-ranking metrics of the model and of most-popular on `rows`."""
    device = items.device
    all_targets = np.asarray(split.plays.items)[rows].astype(np.int64)
    all_rows, rows = rows, rows[world.rank :: world.size]
    targets = np.asarray(split.plays.items)[rows].astype(np.int64)
    users = user_embeddings(model, split, rows, max_len, device)
    exclude = None
    if exclude_seen:
        exclude = [torch.from_numpy(np.unique(split.plays_before(int(r)))).to(device) for r in rows]
    ranks = rank_in_blocks(users, items, torch.from_numpy(targets).to(device), exclude)
    ranks = np.concatenate(all_gather_objects(world, ranks.cpu().numpy()))
    pop = popularity(np.asarray(split.plays.items)[split.train_rows], n_items)
    excluded = None
    if exclude_seen:
        excluded = [np.unique(split.plays_before(int(r))) for r in all_rows]
    return {
        "model": ranking_report(ranks, ks=(10, 20, 50)),
        "most-popular": ranking_report(
            popularity_ranks(pop, all_targets, excluded), ks=(10, 20, 50)
        ),
    }


def popularity_ranks(
    pop: np.ndarray, targets: np.ndarray, exclude: list[np.ndarray] | None = None
) -> np.ndarray:
    """1-based ranks of `targets` when every user gets the same ranking by `pop` (ties
    broken by item id, so there are none); excluded items other than the target drop out
    of the ranking ahead of it."""
    order = np.argsort(-pop, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(1, len(order) + 1)
    ranks = position[targets]
    if exclude is not None:
        for r, ids in enumerate(exclude):
            ahead = position[ids[ids != targets[r]]] < ranks[r]
            ranks[r] -= int(ahead.sum())
    return ranks
