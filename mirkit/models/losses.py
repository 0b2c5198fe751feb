"""Contrastive and softmax losses for two-tower retrieval, single- or multi-process.

Logits are computed in float32 whatever the autocast dtype. In-batch negatives are the
items of every rank: `gathered_info_nce` all-gathers item embeddings with autograd
(torch.distributed.nn), so that with DDP's gradient averaging each rank's gradient equals
the single-process gradient on the concatenated batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mirkit.models.user_tower import GroupBonus, spread_groups


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
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    history: tuple[torch.Tensor, torch.Tensor] | None = None,
    candidates: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
    groups: list[GroupBonus] | None = None,
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue: hidden [N, D], item_table [n_items + 1, D]
    (row 0 = padding, never a candidate), targets [N] in 1..n_items; excluded (rows [E]
    ascending, item ids [E]; optional): items that are not candidates for a row (the
    row's target always stays one; `seen_so_far` makes them);
    history (ids [N, L], bonus [N, L]): the repeat bonus of each row's history tracks,
    added to their scores before the scale (`SASRec.score` ranks by the same sum);
    candidates [n_items + 1] (optional, bool): the items that compete at all (the
    targets and history tracks must be among them); extra [N, n_items + 1]: more of the
    score (the freshness bonus), also before the scale; groups [`GroupBonus`, bonus
    [N, L]]: the continuation bonus of each row's artists and albums, placed on their
    items (`GroupBonus.placed`), also before the scale.

    The [N, n_items] logits are the step's largest tensor and never exist whole: the
    bonuses are entries placed on them, and `chunked_cross_entropy` makes and consumes
    them a few rows at a time (docs/design.md, "Where an id-only step's time goes")."""
    scale = scale.float()
    n = len(targets)
    columns = torch.arange(1, len(item_table), device=targets.device)
    if candidates is not None:
        columns = columns[candidates[1:]]
        extra = extra[:, columns] if extra is not None else None
    column_of = torch.full((len(item_table),), -1, device=targets.device)
    column_of[columns] = torch.arange(len(columns), device=targets.device)
    labels = column_of[targets]
    if excluded is not None:
        rows, places = excluded[0], column_of[excluded[1]]
        kept = (places >= 0) & (places != labels[rows])
        excluded = (rows[kept], places[kept])
    extra = extra.float() * scale if extra is not None else None
    entries = []
    for part in groups or ():
        placed = part.placed(columns, budget=n * len(columns) // 8)
        if placed is None:  # huge groups: their per-group table, spread over the columns
            dense = spread_groups([part], columns).float() * scale
            extra = dense if extra is None else extra + dense
        else:
            rows, places, bonus = placed
            entries.append((rows, places, bonus.float() * scale))
    if history is not None:
        ids, bonus = history
        places = column_of[ids].flatten()
        rows = torch.arange(n, device=ids.device).repeat_interleave(ids.shape[1])
        known = places >= 0
        entries.append((rows[known], places[known], (bonus.float() * scale).flatten()[known]))
    table = item_table[columns].float()
    return chunked_cross_entropy(hidden.float() * scale, table, labels, extra, excluded, entries)


ROWS_PER_CHUNK = 256


def chunked_cross_entropy(
    queries: torch.Tensor,
    table: torch.Tensor,
    labels: torch.Tensor,
    extra: torch.Tensor | None = None,
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (),
) -> torch.Tensor:
    """Mean cross-entropy of logits = queries [N, D] @ table [C, D].T + extra [N, C] +
    the entries (rows [E] ascending, columns [E], values [E]: added to the logits; a
    place may repeat), with the excluded places (rows [X] ascending, columns [X]; never a
    row's label) left out, against labels [N].

    Equal to `F.cross_entropy` of the assembled logits, but the logits and their gradient
    are made and used a chunk of rows at a time, while they sit in the cache, and the
    gradients of every input are computed in the forward pass (they need the same
    softmax): each pass over an [N, C] tensor in memory cost as much as the matrix
    products themselves (docs/design.md)."""
    values = [v for _, _, v in entries]
    places = [(r, c) for r, c, _ in entries]
    if excluded is not None:  # the last places, with no values
        places.append(excluded)
    return _ChunkedCrossEntropy.apply(
        queries, table, labels, extra, excluded is not None, places, *values
    )


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, table, labels, extra, has_excluded, places, *values):
        with torch.autocast(queries.device.type, enabled=False):  # float32 softmax
            return _ChunkedCrossEntropy._forward(
                ctx, queries, table, labels, extra, has_excluded, places, values
            )

    @staticmethod
    def _forward(ctx, queries, table, labels, extra, has_excluded, places, values):
        n = len(labels)
        grads = [torch.zeros_like(queries), torch.zeros_like(table)]
        grad_extra = torch.empty_like(extra) if extra is not None else None
        grad_values = [torch.empty_like(v) for v in values]
        total = queries.new_zeros(())
        starts = torch.arange(0, n + ROWS_PER_CHUNK, ROWS_PER_CHUNK, device=labels.device)
        firsts = [torch.searchsorted(rows, starts).tolist() for rows, _ in places]
        # one buffer for every chunk's logits, worked on in place: a fresh [rows, C] tensor
        # per operation cost more in page faults than the arithmetic (docs/design.md)
        buffer = queries.new_empty(min(n, ROWS_PER_CHUNK), len(table))
        for i, start in enumerate(range(0, n, ROWS_PER_CHUNK)):
            end = min(start + ROWS_PER_CHUNK, n)
            logits = torch.mm(queries[start:end], table.T, out=buffer[: end - start])
            if extra is not None:
                logits += extra[start:end]
            spans = []  # this chunk's part of each list of places: (a, b, rows, columns)
            for (rows, columns), first in zip(places, firsts, strict=True):
                a, b = first[i], first[i + 1]
                spans.append((a, b, rows[a:b] - start, columns[a:b]))
            valued = spans[: len(values)]  # the excluded places come last, without values
            for (a, b, rows, columns), value in zip(valued, values, strict=True):
                logits.index_put_((rows, columns), value[a:b], accumulate=True)
            if has_excluded:
                logits[spans[-1][2], spans[-1][3]] = float("-inf")
            chunk = torch.arange(end - start, device=labels.device)
            label_logits = logits[chunk, labels[start:end]]
            top = logits.amax(dim=1, keepdim=True)
            # d(summed loss)/d logits = softmax - one-hot, in the logits' place (the 1/N
            # of the mean comes in `backward`); logits more than 60 below the row's top
            # are raised to that, so that no product lands among the subnormal floats,
            # which cost x86 CPUs 10-100x more per operation; a share of 1e-26 is none
            probabilities = logits.sub_(top).clamp_(min=-60.0).exp_()
            if has_excluded:
                probabilities[spans[-1][2], spans[-1][3]] = 0.0
            sums = probabilities.sum(dim=1, keepdim=True)
            probabilities.div_(sums)
            total += (top + sums.log()).sum() - label_logits.sum()
            probabilities[chunk, labels[start:end]] -= 1.0
            grads[0][start:end] = probabilities @ table
            grads[1].addmm_(probabilities.T, queries[start:end])
            if grad_extra is not None:
                grad_extra[start:end] = probabilities
            for (a, b, rows, columns), grad in zip(valued, grad_values, strict=True):
                grad[a:b] = probabilities[rows, columns]
        ctx.save_for_backward(*grads, *([grad_extra] if extra is not None else []), *grad_values)
        ctx.has_extra, ctx.rows = extra is not None, n
        return total / n

    @staticmethod
    def backward(ctx, grad_output):
        saved = [g * (grad_output / ctx.rows) for g in ctx.saved_tensors]
        grad_queries, grad_table, rest = saved[0], saved[1], saved[2:]
        grad_extra = rest.pop(0) if ctx.has_extra else None
        return grad_queries, grad_table, None, grad_extra, None, None, *rest


def seen_so_far(inputs: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows [E] ascending, item ids [E]): the items of inputs[b, : p + 1] (padding 0 left
    out) for each position (b, p) where `rows` [B, W] is True, numbered as the rows of
    inputs[rows]. A few entries per row instead of an [N, n_items] mask (which cost a
    quarter of a Beauty step to build)."""
    width = inputs.shape[1]
    positions = torch.arange(width, device=inputs.device)
    row_of = torch.cumsum(rows.flatten(), 0).view(rows.shape) - 1
    earlier = positions[None, :] <= positions[:, None]  # [p, q]: q at or before p
    pick = rows[:, :, None] & earlier[None] & (inputs[:, None, :] > 0)  # [B, p, q]
    b, p, q = pick.nonzero(as_tuple=True)
    return row_of[b, p], inputs[b, q]


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
