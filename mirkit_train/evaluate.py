"""Validation by full ranking over the catalogue, beside the most-popular baseline."""

from __future__ import annotations

import numpy as np
import torch

from mirkit.baselines import popularity
from mirkit.data.content import InputSpec, catalogue_batches
from mirkit.data.plays import Split
from mirkit.metrics import rank_in_blocks, ranking_report, target_ranks
from mirkit.models.item_tower import ItemBatch
from mirkit.models.two_tower import TwoTower


@torch.no_grad()
def embed_catalogue(
    model: TwoTower,
    n_items: int,
    urls: list[str],
    spec: InputSpec,
    device: torch.device,
    batch_size: int = 64,
    tabular: np.ndarray | None = None,
) -> torch.Tensor:
    """[n_items + 1, dim] item embeddings (row 0, padding, is zero). Content models stream
    every shard once (centre crops); id-only models need no content."""
    model.eval()
    table = torch.zeros(n_items + 1, model.config.dim, device=device)
    if spec.mel_frames is None and spec.max_tokens is None and spec.cover_size is None:
        ids = torch.arange(1, n_items + 1, device=device)
        for start in range(0, n_items, 4096):
            chunk = ids[start : start + 4096]
            batch = ItemBatch(item_ids=chunk)
            if tabular is not None:
                batch.tabular = torch.from_numpy(tabular[chunk.cpu().numpy()]).to(device)
            table[chunk] = model.items(batch).float()
        return table
    for batch in catalogue_batches(urls, spec, batch_size, tabular):
        batch = batch.to(device)
        table[batch.item_ids] = model.items(batch).float()
    return table


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
) -> dict[str, dict]:
    """Full-ranking metrics of the model and of most-popular on `rows`."""
    device = items.device
    targets = np.asarray(split.plays.items)[rows].astype(np.int64)
    users = user_embeddings(model, split, rows, max_len, device)
    exclude = None
    if exclude_seen:
        starts = np.asarray(split.plays.indptr)[
            np.searchsorted(split.plays.indptr, rows, side="right") - 1
        ]
        exclude = [
            torch.from_numpy(np.unique(np.asarray(split.plays.items[s:r])).astype(np.int64)).to(
                device
            )
            for s, r in zip(starts, rows, strict=True)
        ]
    ranks = rank_in_blocks(users, items, torch.from_numpy(targets).to(device), exclude)
    pop = popularity(np.asarray(split.plays.items)[split.train_rows], n_items)
    if exclude is not None:
        pop_scores = np.tile(pop, (len(rows), 1))
        for r, ids in enumerate(exclude):
            ids = ids.cpu().numpy()
            pop_scores[r, ids[ids != targets[r]]] = -np.inf
        pop_ranks = target_ranks(pop_scores, targets)
    else:  # no exclusions: one ranking serves every row (popularity has no ties)
        order = np.argsort(-pop, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(1, len(order) + 1)
        pop_ranks = position[targets]
    return {
        "model": ranking_report(ranks.cpu().numpy(), ks=(10, 20, 50)),
        "most-popular": ranking_report(pop_ranks, ks=(10, 20, 50)),
    }
