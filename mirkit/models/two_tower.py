"""The two-tower model: a SASRec user tower and a multimodal item tower in one space."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from mirkit.files import load_weights
from mirkit.models.config import ModelConfig
from mirkit.models.item_tower import ItemBatch, ItemTower
from mirkit.models.losses import LearnedTemperature
from mirkit.models.user_tower import CatalogueEmbedding, SASRec, cold_items, id_embedding

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"


class TwoTower(nn.Module):
    """score(user, item) = <user_tower(history), item_tower(content)>, both L2-normalised.

    n_items: the items it is trained with (ids 1..n_items; 0 = padding; n_items + 1 = out of
    vocabulary: `mirkit.ids`).
    vocab_size: the lyrics tokenizer's vocabulary (for `config:small` text models)."""

    def __init__(self, config: ModelConfig, n_items: int, vocab_size: int | None = None):
        super().__init__()
        self.config, self.n_items, self.vocab_size = config, n_items, vocab_size
        shared = None
        if config.share_id_table and "id" in config.modalities:
            shared = id_embedding(n_items, config.dim, config.n_artists, config.n_albums)
        self.user_tower = SASRec.from_config(config, n_items, shared)
        self.item_tower = ItemTower(config, n_items, shared, vocab_size)
        self.temperature = LearnedTemperature(config.temperature)

    def users(
        self,
        history: torch.Tensor,
        profile: torch.Tensor | None = None,
        times: torch.Tensor | None = None,
        request: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.user_tower(history, profile, times, request)

    def items(self, batch: ItemBatch) -> torch.Tensor:
        return self.item_tower(batch)

    def set_catalogue_groups(self, artist_of: torch.Tensor, album_of: torch.Tensor) -> None:
        """The artist and album index [n_items + 2] of every item id, in every id table."""
        for table in self.modules():
            if isinstance(table, CatalogueEmbedding):
                table.set_groups(artist_of, album_of)

    @contextmanager
    @torch.no_grad()
    def reading_cold_items(self, table: torch.Tensor) -> Iterator[None]:
        """Within the block, histories show cold items by their rows of the catalogue
        `table` (content), as serving does (`TrainedRun.load_user_tower`); their id rows
        are restored after it, for the id table may be shared with the item tower."""
        cold = cold_items(self.item_tower.warm, table)
        if self.item_tower.ids_only or not len(cold):
            yield
            return
        rows = self.user_tower.id_table.weight
        saved = rows[cold].clone()
        self.user_tower.read_cold_items_as(cold, table[cold])
        try:
            yield
        finally:
            rows[cold] = saved

    def save(self, directory: Path) -> None:
        """Weights and the configuration needed to rebuild the model."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / WEIGHTS_FILE)
        description = {
            "config": self.config.to_dict(),
            "n_items": self.n_items,
            "vocab_size": self.vocab_size,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(description, indent=1))

    @classmethod
    def load(cls, directory: Path, map_location: str | torch.device = "cpu") -> TwoTower:
        description = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(
            ModelConfig.from_dict(description["config"]),
            description["n_items"],
            description["vocab_size"],
        )
        state = load_weights(directory / WEIGHTS_FILE, map_location)
        model.load_state_dict(state)
        return model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total and trainable parameters per top-level part (shared tables counted once)."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        part = ".".join(name.split(".")[:2])
        counts[part] = counts.get(part, 0) + param.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts | {"total": sum(counts.values()), "trainable": trainable}
