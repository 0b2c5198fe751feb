"""Contrastive and softmax losses for two-tower retrieval, single- or multi-process.

Logits are computed in float32 whatever the autocast dtype. In-batch negatives are the
items of every rank: `gathered_info_nce` all-gathers item embeddings with autograd
(torch.distributed.nn), so that with DDP's gradient averaging each rank's gradient equals
the single-process gradient on the concatenated batch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mirkit.ids import ItemIds

if TYPE_CHECKING:
    from mirkit.models.user_tower import GroupBonus


class LearnedTemperature(nn.Module):
    """The logit scale 1/tau as a learned log-parameter, clamped to tau >= min_tau."""

    def __init__(self, initial: float = 0.07, min_tau: float = 0.01):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / initial)))
        self.max_scale = 1.0 / min_tau

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0; gradients flow back to each rank."""
    rank, world = _world()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    _, world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def info_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    labels: torch.Tensor,
    row_item_ids: torch.Tensor,
    column_item_ids: torch.Tensor,
    scale: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of each user row [N, D] against item columns [C, D].

    labels [N]: the positive column of each row; columns holding the same item id as the
    row's positive (accidental hits) are masked; log_q [C]: log sampling probability of
    each column's item, subtracted from its logit (logQ correction)."""
    logits = (users.float() @ items.float().T) * scale.float()
    if log_q is not None:
        logits = logits - log_q.float()[None, :]
    columns = torch.arange(items.shape[0], device=items.device)
    accidental = (row_item_ids[:, None] == column_item_ids[None, :]) & (
        columns[None, :] != labels[:, None]
    )
    logits = logits.masked_fill(accidental, float("-inf"))
    return F.cross_entropy(logits, labels)


def gathered_info_nce(
    users: torch.Tensor,
    items: torch.Tensor,
    labels: torch.Tensor,
    row_item_ids: torch.Tensor,
    item_ids: torch.Tensor,
    scale: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE whose negatives are the items of all ranks (equal shapes on every rank).
    `labels` index this rank's `items`."""
    rank, _ = _world()
    all_items = gather_with_grad(items)
    all_ids = gather_no_grad(item_ids)
    all_log_q = gather_no_grad(log_q) if log_q is not None else None
    return info_nce(
        users, all_items, labels + rank * items.shape[0], row_item_ids, all_ids, scale, all_log_q
    )


def full_softmax_loss(
    hidden: torch.Tensor,
    item_table: torch.Tensor,
    targets: torch.Tensor,
    scale: torch.Tensor,
    excluded: torch.Tensor | None = None,
    history: tuple[torch.Tensor, torch.Tensor] | None = None,
    candidates: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    groups: list[GroupBonus] | None = None,
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue: hidden [N, D], item_table [n_items + 1, D]
    (row 0 = padding, never a candidate), targets [N] in 1..n_items; excluded [N, n_items]
    (optional, True = not a candidate for that row; the target always stays one);
    history (ids [N, L], bonus [N, L]): the repeat bonus of each row's history tracks,
    added to their scores before the scale (`SASRec.score` ranks by the same sum);
    candidates [n_items + 1] (optional, bool): the items that compete at all (the
    targets and history tracks must be among them); extra [N, n_items + 1]: more of the
    score (the freshness bonus), also before the scale; groups [`GroupBonus`, bonus
    [N, L]]: the continuation bonus of each row's artists and albums, placed on their
    items here (`GroupBonus.add_to`), also before the scale.

    The [N, n_items] logits are the step's largest tensor, so each pass over them counts
    (docs/design.md, "Where an id-only step's time goes"): the scale multiplies the
    hidden rows, non-candidates are left out of the table rather than masked, and the
    bonus is added in place."""
    scale = scale.float()
    columns = torch.arange(1, len(item_table), device=targets.device)
    if candidates is not None:
        columns = columns[candidates[1:]]
        if excluded is not None:
            excluded = excluded[:, columns - 1]
        extra = extra[:, columns] if extra is not None else None
    column_of = torch.full((len(item_table),), -1, device=targets.device)
    column_of[columns] = torch.arange(len(columns), device=targets.device)
    labels = column_of[targets]
    logits = (hidden.float() * scale) @ item_table[columns].float().T
    if extra is not None:
        logits = logits + extra.float() * scale
    for part in groups or ():
        part.add_to(logits, columns, scale)
    if history is not None:
        ids, bonus = history
        placed = column_of[ids]
        bonus = (bonus * scale).to(logits.dtype).masked_fill(placed < 0, 0.0)
        logits = logits.scatter_add_(1, placed.clamp(min=0), bonus)
    if excluded is not None:
        rows = torch.arange(len(targets), device=targets.device)
        excluded = excluded.clone()
        excluded[rows, labels] = False
        logits = logits.masked_fill(excluded, float("-inf"))
    return F.cross_entropy(logits, labels)


def seen_so_far(inputs: torch.Tensor, n_items: int) -> torch.Tensor:
    """[B, W, n_items] bool: item j + 1 occurs in inputs[b, : p + 1] (0 = padding)."""
    width = inputs.shape[1]
    positions = torch.arange(width, device=inputs.device)
    first = torch.full((inputs.shape[0], ItemIds(n_items).rows), width, device=inputs.device)
    first.scatter_reduce_(1, inputs, positions.expand_as(inputs), reduce="amin")
    return first[:, None, 1:] <= positions[None, :, None]


def sampled_softmax_loss(
    hidden: torch.Tensor,
    item_table: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    scale: torch.Tensor,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of each target against shared sampled negatives [S] (ids drawn with
    log-probabilities `log_q` over the catalogue), logQ-corrected, accidental hits masked."""
    columns = torch.cat([targets, negatives])
    logits = (hidden.float() @ item_table[columns].float().T) * scale.float()
    logits = logits - log_q.float()[columns][None, :]
    labels = torch.arange(len(targets), device=hidden.device)
    hit = (targets[:, None] == columns[None, :]) & (
        torch.arange(len(columns), device=hidden.device)[None, :] != labels[:, None]
    )
    return F.cross_entropy(logits.masked_fill(hit, float("-inf")), labels)
