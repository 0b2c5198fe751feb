"""The multimodal item tower: per-modality encoders -> tokens -> cross-attention fusion,
plus the item's own id embedding.

Each encoder returns a short sequence of tokens and a mask; tokens are projected to the
shared width and tagged with a modality embedding; a learned item query attends over all
of them (missing modalities masked); the result is projected and L2-normalised: the
content part. A learned "no content" token is always present, so an item with nothing
usable still gets a defined embedding. With the id modality the item embedding is
normalise(id part + w * content part), both parts unit vectors and w learned; cold items
(and, in training, a random `id_dropout` share of items) have no id part, so content
alone must place them (DropoutNet's recipe), at a learned length (the cold scale: how
far the dropped ids taught the model to trust content alone against warm items'
unit-length embeddings). Without content the item is its id row,
as in SASRec. The attention mass per modality, weighted by the parts' shares, explains
what an item was embedded from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from mirkit.ids import ItemIds
from mirkit.models.config import ModelConfig
from mirkit.models.resnet import AudioEncoder, ImageEncoder
from mirkit.models.text import TextEncoder
from mirkit.models.user_tower import CatalogueEmbedding, id_embedding

TOKEN_KINDS = ("audio", "lyrics", "cover", "tabular", "none")


@dataclass
class ItemBatch:
    """Content of M items; modalities the model does not use may be None.

    mel: [M, n_mels, T] log-mel (dB), mel_frames: [M] valid frames (0 = no audio);
    tokens: [M, L] ids, token_mask: [M, L] (all False = no lyrics);
    cover: [M, 3, H, W] ImageNet-normalised, has_cover: [M];
    tabular: [M, F] numeric features (already scaled)."""

    item_ids: torch.Tensor
    mel: torch.Tensor | None = None
    mel_frames: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    cover: torch.Tensor | None = None
    has_cover: torch.Tensor | None = None
    tabular: torch.Tensor | None = None

    def _map(self, fn) -> ItemBatch:
        return ItemBatch(
            **{
                f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                for f in fields(self)
            }
        )

    def select(self, index: torch.Tensor) -> ItemBatch:
        return self._map(lambda t: t[index])

    def to(self, device: torch.device | str) -> ItemBatch:
        return self._map(lambda t: t.to(device, non_blocking=True))


def first_occurrence(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the first row of each distinct id, inverse map from rows to distinct ids)."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    rows = torch.arange(len(ids), device=ids.device)
    first = torch.full((len(unique),), len(ids), device=ids.device, dtype=rows.dtype)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return first, inverse


class ItemTower(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        n_items: int,
        id_table: nn.Embedding | None = None,
        vocab_size: int | None = None,
    ):
        super().__init__()
        self.config = config
        d = config.dim
        m = set(config.modalities)
        self.content_modalities = m & {"audio", "lyrics", "cover", "tabular"}
        self.register_buffer("warm", torch.ones(ItemIds(n_items).rows_with_oov, dtype=torch.bool))
        self.id_table = None
        if "id" in m:
            if id_table is None:
                id_table = id_embedding(n_items, d, config.n_artists, config.n_albums)
            self.id_table = id_table
        self.ids_only = not self.content_modalities
        self.audio = AudioEncoder(config.audio) if "audio" in m else None
        self.text = TextEncoder(config.text, vocab_size) if "lyrics" in m else None
        self.image = ImageEncoder(config.image, config.image_weights) if "cover" in m else None
        if self.ids_only:
            # nothing to fuse: the item is its id row, as in SASRec (a fusion layer over
            # the id token alone learned markedly slower; docs/design.md)
            return
        self.project = nn.ModuleDict()
        for name, encoder in (("audio", self.audio), ("lyrics", self.text), ("cover", self.image)):
            if encoder is not None:
                self.project[name] = nn.Linear(encoder.width, d)
        if "tabular" in m:
            self.project["tabular"] = nn.Linear(max(1, config.n_tabular), d)
        # the content part's weight beside the id part (both unit vectors): starts
        # small, so a model warm-started from an id-only run begins as that run
        self.log_content_weight = nn.Parameter(torch.tensor(math.log(0.25)))
        # the length of a content-only embedding (cold items, dropped ids): learned on
        # the dropped ids, i.e. how far content alone is to be trusted against warm items
        self.log_cold_scale = nn.Parameter(torch.tensor(0.0))
        # token-kind embeddings start small, so that at initialisation the tokens' own
        # content (e.g. the item id) and not the shared kind tag dominates the fused
        # embedding; with N(0, 1) kinds every item started almost identical
        self.kind = nn.Embedding(len(TOKEN_KINDS), d)
        nn.init.normal_(self.kind.weight, std=0.02)
        self.none_token = nn.Parameter(torch.zeros(d))
        self.query = nn.Parameter(torch.randn(1, 1, d) * d**-0.5)
        self.attention = nn.MultiheadAttention(
            d, config.fusion_heads, dropout=config.dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, d)

    def set_warm_items(self, item_ids: torch.Tensor) -> None:
        """Items whose id embedding was trained (they had training plays): others (cold
        items) are embedded from content alone."""
        self.warm.zero_()
        self.warm[item_ids] = True

    def _tokens(self, batch: ItemBatch) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        tokens, masks, kinds = [], [], []

        def add(kind: str, value: torch.Tensor, mask: torch.Tensor) -> None:
            k = torch.tensor(TOKEN_KINDS.index(kind), device=value.device)
            projected = self.project[kind](value) if kind in self.project else value
            tokens.append(projected + self.kind(k))
            masks.append(mask)
            kinds.extend([kind] * value.shape[1])

        n = len(batch.item_ids)
        if self.audio is not None:
            audio, mask = self.audio(batch.mel, batch.mel_frames)
            add("audio", audio, mask & (batch.mel_frames > 0)[:, None])
        if self.text is not None:
            states, mask = self.text(batch.tokens, batch.token_mask)
            add("lyrics", states, mask)
        if self.image is not None:
            grid = self.image(batch.cover)
            add("cover", grid, batch.has_cover[:, None].expand(-1, grid.shape[1]))
        if "tabular" in self.project:
            add(
                "tabular",
                batch.tabular[:, None, :],
                torch.ones(n, 1, dtype=torch.bool, device=batch.item_ids.device),
            )
        add(
            "none",
            self.none_token.expand(n, 1, -1),
            torch.ones(n, 1, dtype=torch.bool, device=batch.item_ids.device),
        )
        return tokens, masks, kinds

    def content_part(
        self, batch: ItemBatch, explain: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The fused content [M, dim] (unit vectors), and with `explain` the attention
        mass per token kind [M]."""
        tokens, masks, kinds = self._tokens(batch)
        keys = torch.cat(tokens, dim=1)
        mask = torch.cat(masks, dim=1)
        query = self.query.expand(len(keys), -1, -1).to(keys.dtype)
        fused, weights = self.attention(
            query, keys, keys, key_padding_mask=~mask, need_weights=explain
        )
        content = F.normalize(self.head(self.norm(fused[:, 0])), dim=-1)
        if not explain:
            return content, None
        mass = {}
        for kind in dict.fromkeys(kinds):
            columns = torch.tensor([k == kind for k in kinds], device=keys.device)
            mass[kind] = weights[:, 0, columns].sum(dim=1)
        return content, mass

    def id_part(self, item_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The id rows [M, dim] (unit vectors), where they count [M] and where the item's
        own trained row is in them [M] (1.0: warm and, in training, not dropped). With
        artists and albums (`CatalogueEmbedding`) a cold or dropped item's row is its
        artist's and album's, and counts if it has one."""
        ids = item_ids.clamp(max=self.warm.shape[0] - 1)
        owned = self.warm[ids].float()
        if self.training and self.content_modalities and self.config.id_dropout > 0:
            owned = owned * (torch.rand(len(ids), device=ids.device) >= self.config.id_dropout)
        keep = owned
        if isinstance(self.id_table, CatalogueEmbedding):
            rows = self.id_table(ids, own=owned)
            keep = torch.maximum(owned, self.id_table.grouped(ids).float())
        else:
            rows = self.id_table(ids)
        return F.normalize(rows, dim=-1), keep, owned

    def combine(
        self, own: torch.Tensor, keep: torch.Tensor, owned: torch.Tensor, content: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(item embeddings [M, dim], the content part's share in each [M]): normalise(id
        part + w * content part) where the id counts, the content part times the learned
        cold scale where it does not; with `content_for="cold"` an item with its own
        trained row is that row alone."""
        alpha = self.log_content_weight.exp()
        own = own.to(content.dtype)
        mixed = F.normalize(own + alpha * content, dim=-1)
        share = alpha / (keep + alpha)
        if self.config.content_for == "cold":
            mixed = torch.where(owned[:, None] > 0, own, mixed)
            share = torch.where(owned > 0, torch.zeros_like(share), share)
        keep = keep[:, None].to(content.dtype)
        return keep * mixed + (1 - keep) * self.log_cold_scale.exp() * content, share

    def reads_content(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[M] bool: the items whose embedding reads the content part. Outside training,
        with `content_for="cold"`, an item with its own trained row is that row alone, so
        its content is never computed (and `mirkit index` decodes none of its inputs)."""
        if self.ids_only:
            return torch.zeros_like(item_ids, dtype=torch.bool)
        if self.id_table is None or self.training or self.config.content_for != "cold":
            return torch.ones_like(item_ids, dtype=torch.bool)
        return ~self.warm[item_ids.clamp(max=self.warm.shape[0] - 1)]

    def _content_where_read(
        self, batch: ItemBatch, explain: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """`content_part` of the items that read it (`reads_content`); zeros elsewhere,
        where `combine` does not use it."""
        reads = self.reads_content(batch.item_ids)
        if bool(reads.all()):
            return self.content_part(batch, explain)
        n, rows = len(reads), reads.nonzero()[:, 0]
        content = torch.zeros(n, self.config.dim, device=reads.device)
        mass: dict[str, torch.Tensor] | None = {} if explain else None
        if len(rows):
            part, part_mass = self.content_part(batch.select(rows), explain)
            content = content.to(part.dtype).index_copy(0, rows, part)
            for kind, m in (part_mass or {}).items():
                mass[kind] = m.new_zeros(n).index_copy(0, rows, m)
        return content, mass

    def with_parts(
        self, batch: ItemBatch, explain: bool = False, every_content: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict | None]:
        """(embeddings, content part, id part, the content's share in each embedding,
        attention mass) of a model with content and ids: the training loss needs the
        parts as well. Without `every_content`, the content part only of the items whose
        embedding reads it (zeros elsewhere)."""
        own, keep, owned = self.id_part(batch.item_ids)
        if every_content:
            content, mass = self.content_part(batch, explain)
        else:
            content, mass = self._content_where_read(batch, explain)
        embeddings, share = self.combine(own, keep, owned, content)
        return embeddings, content, own, share, mass

    def encode(
        self, batch: ItemBatch, explain: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Embeddings [M, dim] (unit length; content-only ones the cold scale), and with
        `explain` the share of each token kind and of the id [M] (they sum to 1)."""
        if self.id_table is None:
            return self.content_part(batch, explain)
        if self.ids_only:
            own, keep, _ = self.id_part(batch.item_ids)
            return own, {"id": torch.ones_like(keep)} if explain else None
        embedding, _, _, content_share, mass = self.with_parts(batch, explain, False)
        if not explain:
            return embedding, None
        shares = {kind: m * content_share for kind, m in mass.items()}
        return embedding, {"id": 1 - content_share} | shares

    def forward(self, batch: ItemBatch) -> torch.Tensor:
        """Embeddings [M, dim]; items that occur several times are encoded once."""
        first, inverse = first_occurrence(batch.item_ids)
        if len(first) == len(batch.item_ids):
            return self.encode(batch)[0]
        return self.encode(batch.select(first))[0][inverse]
