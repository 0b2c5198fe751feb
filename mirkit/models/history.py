"""What a listening history says beyond its item ids: when each play happened, and which
of its tracks the listener is about to play again.

Two parts of the user tower live here:

- `GapEmbedding`: time gaps (seconds, or positions for logs without times) on a log
  scale, as learned vectors. The user tower adds the gap before each play to that play's
  input and the gap between the last play and the request to its output, so a session
  start (a long gap) can change the prediction.
- `FreshnessScorer`: a bonus for each item by how long ago anyone first played it, read
  from the user state at request time (new releases for those who look for them).
- `RepeatScorer`: a bonus for each distinct track of the history as a candidate to play
  again, added to its catalogue score (cf. RepeatNet, Ren et al. 2019; ReCANet,
  Ariannezhad et al. 2022). Each earlier play of the track contributes a learned weight
  exp(f(log time since it, log plays since it)); the track's activation is log(1 + the
  sum), as in ACT-R's base-level learning (a power-law decay when f is linear in log
  time) but floored at 0, and the bonus is a * activation + b with (a, b) read from the
  user state, so the model learns from the history when to repeat and when to explore;
  optionally a third weight g takes g x the track's catalogue score back out of it. All
  start at zero: on data without repeats the bonus can stay out of the way.

Nothing here knows a log's rates: the time scale is a log bucketing of seconds, and the
decay and the mixing are learned.
"""

from __future__ import annotations

import torch
from torch import nn

from mirkit.ids import ItemIds

GAP_BUCKETS = 64
"""Buckets of 2 * log2(1 + gap): 64 reach about 2^31 seconds (68 years)."""


def gap_buckets(gaps: torch.Tensor) -> torch.Tensor:
    """Log-scale bucket of each time gap (negative gaps count as 0)."""
    scaled = 2.0 * torch.log2(1.0 + gaps.clamp(min=0).float())
    return scaled.long().clamp(max=GAP_BUCKETS - 1)


class GapEmbedding(nn.Module):
    """A learned vector per gap bucket, and one for an unknown gap (the first play of a
    window, whose predecessor is not shown)."""

    def __init__(self, dim: int):
        super().__init__()
        self.table = nn.Embedding(GAP_BUCKETS + 1, dim)
        nn.init.zeros_(self.table.weight)  # no effect until training finds one

    def forward(self, gaps: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        buckets = gap_buckets(gaps)
        if known is not None:
            buckets = buckets.masked_fill(~known, GAP_BUCKETS)
        return self.table(buckets)


def last_occurrences(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(same [B, L, L]: ids[b, q] == ids[b, q'] and not padding; last [B, L, L]: at
    position p, q holds the latest play of its track among positions <= p)."""
    length = ids.shape[1]
    positions = torch.arange(length, device=ids.device)
    same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] > 0)
    later = same & (positions[None, None, :] > positions[None, :, None])
    next_play = torch.where(later, positions[None, None, :], length).amin(dim=-1)  # [B, L]
    upto = positions[None, :, None] >= positions[None, None, :]  # [1, p, q]: q <= p
    last = upto & (next_play[:, None, :] > positions[None, :, None]) & (ids[:, None, :] > 0)
    return same, last


class RepeatScorer(nn.Module):
    """With `reweighs`, the user state also sets how much a history track's own catalogue
    score counts (the bonus then includes -g x that score): one additive score ranks
    both the catalogue and the history, and this lets the history's tracks be ordered by
    recency and frequency more than by taste where the state says so (docs/design.md).

    With `floored`, the activation is log(1 + sum of weights) rather than log(sum): a
    track played long ago keeps the played-before bonus b instead of falling without
    bound below tracks never played (models saved before it read log(sum))."""

    def __init__(self, dim: int, hidden: int = 16, reweighs: bool = False, floored: bool = False):
        super().__init__()
        self.floored = floored
        self.decay = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.mix = nn.Linear(dim, 3 if reweighs else 2)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    @property
    def reweighs(self) -> bool:
        return self.mix.out_features == 3

    def forward(
        self,
        ids: torch.Tensor,
        times: torch.Tensor,
        request: torch.Tensor,
        state: torch.Tensor,
        catalogue: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The bonus [B, P, L] for P query positions: that of track ids[b, q] when
        predicting at query p, nonzero only where q holds that track's latest play at or
        before p (so each track gets it once).

        ids, times [B, L] (0 = padding); request [B, P] the time of each query (the play
        being predicted); state [B, P, dim] the user state at each query; catalogue
        [B, P, L] the catalogue score of each history track at each query (needed when the
        scorer reweighs). With P < L the queries are the last P positions."""
        length, queries = ids.shape[1], request.shape[1]
        same, last = last_occurrences(ids)
        last = last[:, length - queries :]
        positions = torch.arange(length, device=ids.device)
        query_pos = positions[length - queries :]
        since = (request[:, :, None] - times[:, None, :]).clamp(min=0).float()
        steps = (query_pos[:, None] - positions[None, :] + 1).clamp(min=1).float()
        features = torch.stack([torch.log1p(since), torch.log1p(steps).expand_as(since)], -1)
        played = (positions[None, :] <= query_pos[:, None])[None] & (ids[:, None, :] > 0)
        # the MLP sees only the (query, earlier play) pairs: on short, padded histories
        # most of the [B, P, L] grid is padding or the future
        weight = features.new_full(played.shape, float("-inf"))
        weight = weight.masked_scatter(played, self.decay(features[played]).squeeze(-1))
        top = weight.amax(dim=-1, keepdim=True).clamp(min=-1e4)
        summed = torch.bmm((weight - top).exp(), same.float())  # [B, P, L]: per track
        activation = torch.log(summed.clamp(min=1e-30)) + top
        if self.floored:
            activation = nn.functional.softplus(activation)  # log(1 + sum), without overflow
        a, b, *g = self.mix(state).unbind(-1)
        bonus = a[..., None] * activation + b[..., None]
        if g:
            bonus = bonus - g[0][..., None] * catalogue
        return bonus.masked_fill(~last, 0.0)


def scatter_history(
    scores: torch.Tensor, ids: torch.Tensor, bonus: torch.Tensor, scale: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """scores [N, V] plus scale * bonus [N, L] at columns ids [N, L] (each track's bonus
    is nonzero at most once per row, so adding is placing)."""
    return scores.scatter_add(1, ids, (bonus * scale).to(scores.dtype))


def lookup(table: torch.Tensor, ids: torch.Tensor, missing: int) -> torch.Tensor:
    """table[ids] for the item ids `ids`, `missing` for ids beyond the table (items
    appended after the model was trained)."""
    found = table[ids.clamp(max=len(table) - 1)]
    return torch.where(ids < len(table), found, missing)


NOT_PLAYED = torch.iinfo(torch.int64).max // 2
"""The first-play time of an item nobody has played: after any request."""


class FreshnessScorer(nn.Module):
    """A bonus for each item by its age in the log at the request time - how long ago
    anyone first played it, on the log-scale buckets of the gaps, with "not played before
    the request" a bucket of its own - weighted per bucket by the user state: a listener
    who goes looking for new tracks gets them. The index stays static: the item side is
    only the first-play time (a buffer, `set_first_played`), the weights come from the
    user side at request time. Starts at zero."""

    def __init__(self, dim: int, n_items: int):
        super().__init__()
        self.weights = nn.Linear(dim, GAP_BUCKETS + 1)
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        rows = ItemIds(n_items).rows_with_oov
        self.register_buffer("first_played", torch.full((rows,), NOT_PLAYED))

    @torch.no_grad()
    def set_first_played(self, times: torch.Tensor) -> None:
        """The first play time [n_items + 2] of every item id (NOT_PLAYED: none)."""
        self.first_played.copy_(times)

    def forward(
        self, request: torch.Tensor, state: torch.Tensor, columns: torch.Tensor
    ) -> torch.Tensor:
        """Bonus [N, C] of the item ids `columns` ([C] or [N, C]) for requests [N] by
        users in `state` [N, dim]. Ids the buffer does not know count as not played."""
        first = lookup(self.first_played, columns, NOT_PLAYED)
        age = request[:, None] - (first[None, :] if first.dim() == 1 else first)
        bucket = gap_buckets(age).masked_fill(age <= 0, GAP_BUCKETS)
        return self.weights(state).gather(1, bucket)
