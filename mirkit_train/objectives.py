"""What a batch costs: the loss of each data path, as one module DDP can wrap.

DDP synchronises gradients only for computation that runs through the wrapped module's
forward, so the whole step - user tower, item tower, loss - lives in `TrainingStep`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mirkit.ids import ItemIds
from mirkit.models.item_tower import ItemBatch
from mirkit.models.losses import (
    full_softmax_loss,
    gathered_info_nce,
    info_nce,
    sampled_softmax_loss,
    seen_so_far,
)
from mirkit.models.two_tower import TwoTower
from mirkit.models.user_tower import HISTORY_SCORERS, CatalogueEmbedding
from mirkit_train.config import TrainConfig
from mirkit_train.item_major import ItemMajorBatch


def items_by_id(model: TwoTower, ids: torch.Tensor, tabular: np.ndarray | None) -> torch.Tensor:
    batch = ItemBatch(item_ids=ids)
    if tabular is not None:
        batch.tabular = torch.from_numpy(tabular[ids.cpu().numpy()]).to(ids.device)
    return model.items(batch)


def hide_history_items(histories: torch.Tensor, p: float, mask_id: int) -> torch.Tensor:
    """Training histories with each item (not padding) replaced by `mask_id` with
    probability p: the model must predict from partly hidden histories, which regularises
    it on sparse data (measured in docs/design.md). The mask is the id table's
    out-of-vocabulary row, the one serving shows for ids it does not know."""
    if p <= 0:
        return histories
    hide = (histories > 0) & (torch.rand(histories.shape, device=histories.device) < p)
    return histories.masked_fill(hide, mask_id)


def user_major_loss(
    model: TwoTower,
    batch,
    loss: str,
    n_items: int,
    log_pop: torch.Tensor,
    cfg: TrainConfig,
    tabular: np.ndarray | None,
) -> tuple[torch.Tensor, int]:
    inputs, targets, times, request = (t.to(log_pop.device) for t in batch)
    tower = model.user_tower
    shown = hide_history_items(inputs, cfg.history_dropout, tower.oov_index())
    hidden = tower.sequence(shown, None, times, request)  # the last max_len columns
    width = hidden.shape[1]
    mask = targets[:, -width:] > 0
    h, t = hidden[mask], targets[:, -width:][mask]
    scale = model.temperature()
    if loss == "in-batch":
        columns = torch.unique(t)
        labels = torch.searchsorted(columns, t)
        value = info_nce(
            h,
            items_by_id(model, columns, tabular),
            labels,
            t,
            columns,
            scale,
            log_pop[columns] if cfg.logq else None,
        )
        return value, len(t)
    every_row = torch.arange(ItemIds(n_items).rows, device=t.device)
    table = items_by_id(model, every_row, tabular)
    if loss == "full-softmax":
        excluded = seen_so_far(inputs[:, -width:], mask) if cfg.mask_seen else None
        shown = shown.masked_fill(shown > n_items, 0)  # a hidden track gets no repeat bonus
        bonus = tower.history_bonus(shown, hidden, times, request, table)
        history = None
        if bonus is not None:  # [B, L (queries), L (history)] -> the rows of the targets
            history = (shown[:, None, :].expand_as(bonus)[mask], bonus[mask])
        # an item without training plays is never a target: as a negative its id row would
        # only learn to move away from users, while its artist's and album's rows carry it
        warm = model.item_tower.warm[: len(every_row)]
        groups = tower.group_bonus(shown, hidden, times, request, mask)
        fresh = None
        if tower.freshness is not None:
            fresh = tower.freshness(request[:, -width:][mask], h, every_row)
        value = full_softmax_loss(h, table, t, scale, excluded, history, warm, fresh, groups)
        return value, len(t)
    negatives = torch.randint(1, n_items + 1, (cfg.sampled_negatives,), device=t.device)
    uniform = torch.full((len(every_row),), -math.log(n_items), device=t.device)
    return sampled_softmax_loss(h, table, t, negatives, scale, uniform), len(t)


def item_major_loss(
    model: TwoTower, batch: ItemMajorBatch, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, int]:
    """In-batch InfoNCE of the K histories of each of the M items against the items of
    all ranks; for models with content and ids, plus `align_weight` x an InfoNCE that
    asks each item's content part to find the item's own (detached) id row among the
    batch's: what lets a cold item, which has only content, land where its warm
    neighbours' ids are. With content for cold items only, the content part also plays
    every item as if it were cold (the same InfoNCE with the content-only embeddings):
    otherwise it would learn from the dropped ids alone."""
    m, k, length = batch.histories.shape
    histories = batch.histories.view(m * k, length).to(device)
    times = batch.times.view(m * k, length).to(device)
    request = batch.request.view(m * k).to(device)
    users = model.users(
        hide_history_items(histories, cfg.history_dropout, model.user_tower.oov_index()),
        None,
        times,
        request,
    )
    items_batch = batch.items.to(device)
    ids = items_batch.item_ids
    tower = model.item_tower
    labels = torch.arange(m, device=device).repeat_interleave(k)
    log_q = batch.log_q.to(device).float() if cfg.logq else None

    def in_batch(items: torch.Tensor) -> torch.Tensor:
        return gathered_info_nce(users, items, labels, ids[labels], ids, model.temperature(), log_q)

    if tower.id_table is None or not tower.content_modalities:
        return in_batch(model.items(items_batch)), m * k
    items, content, own, _, _ = tower.with_parts(items_batch)
    value = in_batch(items)
    if model.config.content_for == "cold":
        # content only ever stands in for a missing id: train it as if every item were cold
        value = value + in_batch(tower.log_cold_scale.exp() * content)
    if cfg.align_weight > 0:
        diagonal = torch.arange(m, device=device)
        align = info_nce(content, own.detach(), diagonal, ids, ids, model.temperature())
        value = value + cfg.align_weight * align
    return value, m * k


def parts_without_gradient(model: TwoTower, path: str, loss: str) -> tuple[str, ...]:
    """Parts this objective never reaches, to be kept fixed (DDP requires every trained
    parameter to get a gradient): the repeat, continuation and freshness parts learn from
    the full softmax only, the one loss that scores the history's tracks, every item's
    artist and album and every item's age; the
    cold scale (the length of content-only embeddings) has nothing to learn from when
    every item has an artist or album (its rows stand in for a missing id), nor the
    content weight with content for cold items only and no artist or album rows (an id
    then counts only where it is the item's own row)."""
    fixed = []
    if (path, loss) != ("user-major", "full-softmax"):
        tower = model.user_tower
        fixed += [f"user_tower.{n}" for n in HISTORY_SCORERS if getattr(tower, n) is not None]
    table = model.item_tower.id_table
    grouped = isinstance(table, CatalogueEmbedding)
    if hasattr(model.item_tower, "log_cold_scale") and grouped:
        ids = torch.arange(1, model.n_items + 1, device=table.weight.device)  # every item
        fixed += ["item_tower.log_cold_scale"] if bool(table.grouped(ids).all()) else []
    if hasattr(model.item_tower, "log_content_weight") and not grouped:
        # with content for cold items only, an id counts only where it is the item's own
        fixed += ["item_tower.log_content_weight"] if model.config.content_for == "cold" else []
    return tuple(fixed)


class TrainingStep(nn.Module):
    """forward(batch) -> (loss, training pairs in the batch) for one data path."""

    def __init__(
        self,
        model: TwoTower,
        path: str,
        loss: str,
        log_pop: torch.Tensor,
        cfg: TrainConfig,
        tabular: np.ndarray | None,
    ):
        super().__init__()
        self.model, self.path, self.loss, self.cfg, self.tabular = model, path, loss, cfg, tabular
        self.register_buffer("log_pop", log_pop, persistent=False)

    def forward(self, batch) -> tuple[torch.Tensor, int]:
        if self.path == "item-major":
            return item_major_loss(self.model, batch, self.cfg, self.log_pop.device)
        return user_major_loss(
            self.model, batch, self.loss, self.model.n_items, self.log_pop, self.cfg, self.tabular
        )
