"""Full-ranking metrics: the rank of each held-out target among all candidate items.

Ties are broken pessimistically: a target ranks below every other item with an equal
score, so a model that scores everything equally gets no credit.
"""

from __future__ import annotations

import numpy as np
import torch


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based ranks of `targets[b]` in `scores[b]` ([B, N] scores, higher is better).
    Items scored -inf (excluded) never outrank anything, but an excluded target gets -inf
    too and ranks last."""
    target_scores = scores[np.arange(len(targets)), targets]
    return (scores >= target_scores[:, None]).sum(axis=1)


def top_items(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best item ids of `scores` [N], best first, ties by lower id (what a stable
    sort of -scores gives) in O(N) rather than a full sort: a million items per target."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)[: k - len(above)]
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of targets ranked in the top k (equals HR@k with one target per user)."""
    return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1/log2(rank + 1) when rank <= k, else 0."""
    if not len(ranks):
        return float("nan")
    gains = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return float(gains.mean())


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / ranks)) if len(ranks) else float("nan")


def ranking_report(ranks: np.ndarray, ks: tuple[int, ...] = (10, 20, 50)) -> dict[str, float]:
    report = {f"Recall@{k}": recall_at_k(ranks, k) for k in ks}
    report |= {f"NDCG@{k}": ndcg_at_k(ranks, k) for k in ks}
    report["MRR"] = mrr(ranks)
    report["n"] = int(len(ranks))
    return report


def rank_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pessimistic 1-based ranks of `targets` [B] in `scores` [B, n_items + 1], changed in
    place: column 0 (padding) and the excluded places (rows [E], item ids [E]; e.g. the
    users' histories) get -inf, except a row's own target, so a repeat can still be a hit."""
    scores[:, 0] = float("-inf")
    if exclude is not None:
        rows, ids = exclude
        other = ids != targets[rows]
        scores[rows[other], ids[other]] = float("-inf")
    target_scores = scores[torch.arange(len(scores), device=scores.device), targets]
    return (scores >= target_scores[:, None]).sum(dim=1)
