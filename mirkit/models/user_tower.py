"""The user tower: SASRec (Kang & McAuley, 2018) with pre-LN Transformer blocks.

Histories are left-padded item ids [B, L] (0 = padding; the most recent play is at the
end); ids beyond the catalogue map to an out-of-vocabulary row. Outputs at every
position serve the all-position loss; the output at the last position is the user.

With `time_inputs`, the play times [B, L] and the time of each request (the play being
predicted) enter as log-scale gaps (`mirkit.models.history`); without times, positions
stand in for them. With `repeat`, `score` adds each history track's learned bonus as a
candidate to play again to its catalogue score: the one scoring function of training
validation, `mirkit eval` and `mirkit recommend`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mirkit.ids import ItemIds
from mirkit.models.blocks import Blocks, Dropout
from mirkit.models.config import ModelConfig
from mirkit.models.history import (
    FreshnessScorer,
    GapEmbedding,
    RepeatScorer,
    lookup,
    scatter_history,
)


def id_embedding(n_items: int, dim: int, n_artists: int = 0, n_albums: int = 0) -> nn.Embedding:
    """The item id table (rows 0 = padding, n_items + 1 = out of vocabulary), with artist
    and album rows when the catalogue has them (`CatalogueEmbedding`). Small initial
    rows: scores are cosines, and under Adam a row's angle moves about lr / norm per step,
    so N(0, 1) rows (norm ~ sqrt(dim)) learned several times slower (measured in
    docs/design.md)."""
    if n_artists or n_albums:
        return CatalogueEmbedding(n_items, dim, n_artists, n_albums)
    table = nn.Embedding(ItemIds(n_items).rows_with_oov, dim, padding_idx=0)
    _small_rows(table)
    return table


def _small_rows(table: nn.Embedding) -> None:
    nn.init.normal_(table.weight, std=0.02)
    with torch.no_grad():
        table.weight[0].zero_()


class CatalogueEmbedding(nn.Embedding):
    """The item id table plus one row per artist and one per album, summed: tracks of an
    artist share part of their embedding, so a track nobody has played yet (an untrained,
    near-zero id row) starts where its artist's and album's tracks are, and a history of
    one artist tells the user tower about that artist's other tracks. `weight` is the id
    table alone (what serving overwrites for cold items). Group row 0 means none (padding,
    an unknown artist, a track without an album) and stays zero. Which artist and album
    each item id has are buffers, saved with the weights (`set_groups`)."""

    def __init__(self, n_items: int, dim: int, n_artists: int, n_albums: int):
        super().__init__(ItemIds(n_items).rows_with_oov, dim, padding_idx=0)
        self.artists = nn.Embedding(n_artists + 1, dim, padding_idx=0)
        self.albums = nn.Embedding(n_albums + 1, dim, padding_idx=0)
        for table in (self, self.artists, self.albums):
            _small_rows(table)
        rows = ItemIds(n_items).rows_with_oov
        self.register_buffer("artist_of", torch.zeros(rows, dtype=torch.long))
        self.register_buffer("album_of", torch.zeros(rows, dtype=torch.long))

    @torch.no_grad()
    def set_groups(self, artist_of: torch.Tensor, album_of: torch.Tensor) -> None:
        """The artist and album index [n_items + 2] of every item id (0 = none)."""
        self.artist_of.copy_(artist_of)
        self.album_of.copy_(album_of)

    def grouped(self, ids: torch.Tensor) -> torch.Tensor:
        """Whether each item has an artist or an album."""
        return (self.artist_of[ids] > 0) | (self.album_of[ids] > 0)

    def forward(self, ids: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """Rows of `ids`; with `own` [...] (0 or 1), the id row counts only where it is 1
        (a cold or id-dropped item keeps its artist's and album's rows)."""
        rows = F.embedding(ids, self.weight, self.padding_idx)
        if own is not None:
            rows = rows * own[..., None].to(rows.dtype)
        return rows + self.artists(self.artist_of[ids]) + self.albums(self.album_of[ids])


def cold_items(warm: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Ids of the items without training plays (`warm` [n + 2] False) that `table`
    [>= n + 1, dim] embeds (a nonzero row, e.g. from content): those a history should show
    by their embedding (`SASRec.read_cold_items_as`)."""
    n = min(len(warm) - 1, len(table))
    cold = ~warm[:n].to(table.device) & (table[:n].abs().sum(dim=-1) > 0)
    cold[0] = False
    return cold.nonzero()[:, 0]


HISTORY_SCORERS = ("repeat", "continuation", "freshness")
"""The parts of the tower that score items from the history at request time (attributes,
None where off): small, trained by the full softmax only."""


class SASRec(nn.Module):
    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        blocks: int,
        heads: int,
        dropout: float,
        id_table: nn.Embedding | None = None,
        n_profile: int = 0,
        time_inputs: bool = False,
        repeat: bool = False,
        groups: tuple[int, int] = (0, 0),
        repeat_memory: int = 0,
        freshness: bool = False,
        continuation: bool = False,
        reweigh_history: bool = False,
        floored_activation: bool = False,
    ):
        super().__init__()
        self.n_items = n_items
        self.ids = ItemIds(n_items)  # the trained items: its id table's
        self.max_len = max_len
        # the plays a history should hold: the repeat part may read further back
        if id_table is None:
            id_table = id_embedding(n_items, dim, *groups)
        self.id_table = id_table
        kinds = [k for k, n in zip(("artist", "album"), groups, strict=True) if n]
        # one repeat scorer per kind of group, fed the history's artist or album ids
        self.continuation = None
        if continuation and kinds:
            self.continuation = nn.ModuleDict(
                {k: RepeatScorer(dim, floored=floored_activation) for k in kinds}
            )
        scored = repeat or self.continuation is not None
        self.history_len = max(max_len, repeat_memory) if scored else max_len
        self.positions = nn.Embedding(max_len, dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.profile = nn.Linear(n_profile, dim) if n_profile else None
        self.blocks = Blocks(blocks, dim, heads, 4 * dim, dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.play_gaps = GapEmbedding(dim) if time_inputs else None
        self.request_gaps = GapEmbedding(dim) if time_inputs else None
        self.repeat = None
        if repeat:
            self.repeat = RepeatScorer(dim, reweighs=reweigh_history, floored=floored_activation)
        self.freshness = FreshnessScorer(dim, n_items) if freshness else None

    @classmethod
    def from_config(
        cls, config: ModelConfig, n_items: int, id_table: nn.Embedding | None = None
    ) -> SASRec:
        """The user tower of a model config (`id_table`: a table shared with the item
        tower; by default its own)."""
        return cls(
            n_items,
            config.dim,
            config.max_len,
            config.user_blocks,
            config.user_heads,
            config.dropout,
            id_table,
            n_profile=config.n_profile,
            time_inputs=config.time_inputs,
            repeat=config.repeat,
            groups=(config.n_artists, config.n_albums),
            repeat_memory=config.repeat_memory,
            freshness=config.freshness,
            continuation=config.continuation,
            reweigh_history=config.reweigh_history,
            floored_activation=config.floored_activation,
        )

    @torch.no_grad()
    def read_cold_items_as(self, cold: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Overwrite (in place) the rows of items without a trained id row with their item
        embeddings (content, for a cold item) [len(cold), dim], scaled to the median norm
        of the trained rows: a history that holds a cold item then shows it to the
        Transformer by its content instead of as an untrained row. For serving only: a
        tower whose table is shared with an item tower would change that tower too."""
        trained = torch.ones(self.ids.rows, dtype=torch.bool, device=cold.device)
        trained[0] = False
        trained[cold] = False
        scale = self.id_table.weight[: self.ids.rows][trained].norm(dim=-1).median()
        rows = F.normalize(embeddings.to(self.id_table.weight), dim=-1) * scale
        self.id_table.weight[cold] = rows

    def oov_index(self) -> int:
        return self.ids.oov

    def sequence(
        self,
        history: torch.Tensor,
        profile: torch.Tensor | None = None,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L2-normalised outputs at every position [B, L, dim] (padding rows are defined
        but meaningless). Position p attends to positions <= p only; its request time
        `request[:, p]` is the time of the play it predicts (default: the next position)."""
        history, times, request = _window(history, times, request, self.max_len)
        ids = torch.where(history > self.n_items, self.oov_index(), history)
        length = ids.shape[1]
        x = self.id_table(ids)
        x = x + self.positions(torch.arange(self.max_len - length, self.max_len, device=ids.device))
        if self.profile is not None and profile is not None:
            x = x + self.profile(profile)[:, None, :]
        if self.play_gaps is not None:
            times, request = play_times(ids, times, request)
            previous = F.pad(times[:, :-1], (1, 0))
            x = x + self.play_gaps(times - previous, F.pad(ids[:, :-1], (1, 0)) > 0)
        x = self.blocks(self.dropout(x), self._attention_mask(ids), ids > 0)
        if self.request_gaps is not None:
            x = x + self.request_gaps(request - times)
        return F.normalize(self.head(self.norm(x)), dim=-1)

    def history_bonus(
        self,
        history: torch.Tensor,
        states: torch.Tensor,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
        items: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The repeat bonus [B, P, L] of each track of the history [B, L] (its last
        `history_len` plays) at the last P positions, whose user states are `states`
        [B, P, dim]; None without a repeat part. `items` [V, dim], the item table the
        states score (row = id), is needed by a repeat part that reweighs."""
        if self.repeat is None:
            return None
        history, times, request = self._scored_history(history, times, request, states)
        catalogue = None
        if self.repeat.reweighs:
            known = _known_ids(history, items)
            # F.embedding, not items[known]: its backward sums each row's gradient in a
            # fixed order (an indexing backward accumulates across threads, and training
            # runs would differ in the last float bits)
            rows = F.embedding(known, items).float()
            catalogue = torch.einsum("bpd,bld->bpl", states.float(), rows)
        return self.repeat(history, times, request, states, catalogue)

    def _scored_history(
        self,
        history: torch.Tensor,
        times: torch.Tensor | None,
        request: torch.Tensor | None,
        states: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(history, times [B, history_len], request [B, P]) as the history scorers read
        them: the last `history_len` plays, and the request time of each of the P queries
        of `states` [B, P, dim]."""
        history, times, request = _window(history, times, request, self.history_len)
        times, request = play_times(history, times, request)
        return history, times, request[:, -states.shape[1] :]

    def group_bonus(
        self,
        history: torch.Tensor,
        states: torch.Tensor,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> list[GroupBonus] | None:
        """The continuation bonus of the artists and albums of the history [B, L] (its
        last `history_len` plays) at the last P positions, whose user states are `states`
        [B, P, dim]: one `GroupBonus` per kind of group, [B, P, L]; with `keep` [B, P]
        (bool), only the kept queries' rows, [N, L]. None without a continuation part."""
        if self.continuation is None:
            return None
        history, times, request = self._scored_history(history, times, request, states)
        parts = []
        for kind, scorer in self.continuation.items():
            group_of = getattr(self.id_table, f"{kind}_of")
            groups = _group(group_of, history)
            bonus = scorer(groups, times, request, states)  # [B, P, L]
            groups = groups[:, None, :].expand_as(bonus)
            if keep is not None:
                bonus, groups = bonus[keep], groups[keep]
            n_groups = getattr(self.id_table, f"{kind}s").num_embeddings
            parts.append(GroupBonus(bonus, groups, group_of, n_groups))
        return parts

    def _attention_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """[B * heads, L, L], True = blocked: no future positions, no padding keys; a
        padding position sees only itself, so no row is fully blocked (no NaN)."""
        length = ids.shape[1]
        eye = torch.eye(length, dtype=torch.bool, device=ids.device)
        causal = torch.triu(torch.ones_like(eye), 1)
        blocked = causal[None] | ((ids == 0)[:, None, :] & ~eye[None])
        heads = self.blocks.layers[0].self_attn.num_heads
        return blocked.repeat_interleave(heads, dim=0)

    def forward(
        self,
        history: torch.Tensor,
        profile: torch.Tensor | None = None,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The user embedding [B, dim]: the output after the most recent play, for a
        request at time `request` [B] (default: one step after the last play). Columns
        that are padding in every row are dropped first (same result, less work)."""
        history, times, request = _window(history, times, request, self.max_len, trim=True)
        return self.sequence(history, profile, times, request)[:, -1]

    def score(
        self,
        history: torch.Tensor,
        items: torch.Tensor,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
        candidates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores [B, V] of every item for requests at `request` [B]: the user embedding's
        dot product with `items` [V, dim] (the index, L2-normalised rows), plus the repeat
        bonus of the history's tracks, the continuation bonus of the tracks of its artists
        and albums and the freshness bonus of every item. Training
        validation, `mirkit eval` and `mirkit recommend` all rank by this. Zero rows (items
        the index has nothing to embed from) score -inf. With `candidates` [B, C] (item
        ids), only theirs."""
        history, times, request = _window(history, times, request, self.history_len, trim=True)
        states = self.sequence(history, None, times, request)[:, -1:]
        if candidates is None:
            scores = states[:, 0].float() @ items.float().T
            columns = torch.arange(len(items), device=items.device)
        else:
            scores = (states.float() * items[candidates].float()).sum(dim=-1)
            columns = candidates
        if self.freshness is not None:
            at = play_times(history, times, request)[1][:, -1]
            scores = scores + self.freshness(at, states[:, 0], columns)
        groups = self.group_bonus(history, states, times, request)
        if groups is not None:
            scores = scores + spread_groups(groups, columns)[:, 0]
        bonus = self.history_bonus(history, states, times, request, items)
        if bonus is not None:
            known = _known_ids(history, items)
            if candidates is None:
                scores = scatter_history(scores, known, bonus[:, 0])
            else:
                matches = (candidates[:, :, None] == known[:, None, :]).float()
                scores = scores + (matches @ bonus[:, 0, :, None]).squeeze(-1)
        unusable = (items == 0).all(dim=1)  # nothing to embed the item from: never ranked
        unusable = unusable if candidates is None else unusable[candidates]
        return scores.masked_fill(unusable, float("-inf"))


@dataclass
class GroupBonus:
    """The continuation bonus of one kind of group (artist or album): `bonus` [..., L]
    of the groups `groups` [..., L] (0: none, never a bonus) of a history's plays; every
    item of a group gets the sum of its group's bonuses. `group_of` [ids]: the group of
    every item id."""

    bonus: torch.Tensor
    groups: torch.Tensor
    group_of: torch.Tensor
    n_groups: int

    def per_group(self) -> torch.Tensor:
        """[..., n_groups]: each group's summed bonus (none for group 0, no group)."""
        shape = (*self.bonus.shape[:-1], self.n_groups)
        bonus = self.bonus.masked_fill(self.groups == 0, 0.0)
        return bonus.new_zeros(shape).scatter_add(-1, self.groups, bonus)

    def placed(
        self, columns: torch.Tensor, budget: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(rows [E], places in `columns` [E], bonus [E]) of every item of `columns` [C]
        a row's groups reach (bonus and groups [N, L]; rows ascending; an item reached
        twice appears twice), or None when there would be more than `budget` entries (a
        few huge groups: spread a per-group table instead). A history's artists and
        albums reach far fewer items than the catalogue has."""
        column_groups = _group(self.group_of, columns)
        size = torch.bincount(column_groups, minlength=self.n_groups)
        groups = self.groups.flatten()
        reach = torch.where(groups > 0, size[groups], 0)  # the items each play's group reaches
        if int(reach.sum()) > budget:
            return None
        members = torch.argsort(column_groups)  # column places, group by group
        first = torch.cumsum(size, 0) - size  # each group's first entry in `members`
        play = torch.repeat_interleave(torch.arange(len(groups), device=groups.device), reach)
        nth = torch.arange(len(play), device=play.device) - (torch.cumsum(reach, 0) - reach)[play]
        rows = play // self.groups.shape[-1]
        return rows, members[first[groups[play]] + nth], self.bonus.flatten()[play]


def spread_groups(parts: list[GroupBonus], columns: torch.Tensor) -> torch.Tensor:
    """The bonus [..., C] of the items `columns` ([C], or [B, C] for bonuses [B, 1, L])
    from their groups' (`SASRec.group_bonus`)."""
    total = 0.0
    for part in parts:
        per_group = part.per_group()
        if columns.dim() == 1:
            total = total + per_group.index_select(-1, _group(part.group_of, columns))
        else:
            total = total + per_group.gather(-1, _group(part.group_of, columns)[:, None, :])
    return total


def _group(group_of: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The artist or album index of each item id (0: none, or an id the table lacks)."""
    return lookup(group_of, ids, 0)


def play_times(
    ids: torch.Tensor, times: torch.Tensor | None, request: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(times [B, L], request [B, L]): positions stand in for missing play times, and the
    request at position p defaults to the time of position p + 1 (one step after the
    last play at the end). A request [B] is the time of the last position's request."""
    length = ids.shape[1]
    if times is None:
        times = torch.arange(1, length + 1, device=ids.device).expand_as(ids)
    times = times.to(ids.device)
    if request is None or request.dim() == 1:
        last = times[:, -1:] + 1 if request is None else request.to(ids.device)[:, None]
        request = torch.cat([times[:, 1:], last.to(times.dtype)], dim=1)
    return times, request.to(ids.device)


def _known_ids(history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The history's ids, with 0 (padding) for ids beyond the item table `items` (tracks
    added after the index was built)."""
    return torch.where(history < items.shape[0], history, 0)


def _window(
    history: torch.Tensor,
    times: torch.Tensor | None,
    request: torch.Tensor | None,
    max_len: int,
    trim: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The last max_len columns; with `trim`, also without the columns that are padding
    in every row (same result, less work). A request [B] is kept whole."""
    first = max(0, history.shape[1] - max_len)
    if trim:
        used = (history != 0).any(dim=0).nonzero()
        first = max(first, int(used[0]) if len(used) else history.shape[1] - 1)
    times = times[:, first:] if times is not None else None
    if request is not None and request.dim() == 2:
        request = request[:, first:]
    return history[:, first:], times, request
