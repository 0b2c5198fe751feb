"""Reading a trained run (what `mirkit train` wrote) for indexing and recommending.

The library reads a run's files - `config.json`, `model/` - without importing the
trainer: the run directory is a data format like the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mirkit.data.content import InputSpec, tabular_features, tabular_scaling
from mirkit.errors import MirkitError
from mirkit.files import load_weights
from mirkit.ids import ItemIds
from mirkit.models.config import ModelConfig
from mirkit.models.two_tower import CONFIG_FILE, WEIGHTS_FILE, TwoTower
from mirkit.models.user_tower import SASRec, cold_items
from mirkit.shards.manifest import id_map_fingerprint, load_manifest


class RunError(MirkitError, ValueError):
    """A run directory that cannot serve: the message says what is missing."""


@dataclass
class TrainedRun:
    path: Path
    record: dict  # config.json

    @classmethod
    def open(cls, path: Path) -> TrainedRun:
        config = path / "config.json"
        if not config.exists() or not (path / "model" / CONFIG_FILE).exists():
            raise RunError(
                f"{path} holds no trained model (config.json and model/ are written by "
                f"`mirkit train --run {path}` after its first validation)"
            )
        record = json.loads(config.read_text())
        if "input_spec" not in record:
            raise RunError(f"{path} was trained by an older mirkit; train it again")
        return cls(path, record)

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def n_items(self) -> int:
        """The items the model was trained with (its tables' ids 1..n)."""
        return int(self.record["n_items"])

    @property
    def ids(self) -> ItemIds:
        return ItemIds(self.n_items)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(**self.record["input_spec"])

    def shards(self, override: Path | None = None) -> Path:
        return override if override is not None else Path(self.record["train"]["shards"])

    def check_shards(self, shards: Path) -> tuple[dict, pl.DataFrame]:
        """(manifest, catalog) of `shards` if they extend what the run was trained on:
        the same content settings, and the same items under the same ids (new items
        appended with `shards build --append` are fine)."""
        manifest = load_manifest(shards)
        catalog = pl.read_parquet(shards / "catalog.parquet")
        trained = self.record["shards_fingerprints"]
        if manifest["fingerprints"]["content_config"] != trained["content_config"]:
            raise RunError(
                f"{shards} was built with other content settings or another tokenizer "
                f"than the shards {self.path} was trained on: use those shards"
            )
        known = catalog.filter(pl.col("item_id") <= self.n_items)
        if id_map_fingerprint(known) != trained["id_map"]:
            raise RunError(
                f"the items of {shards} are not the ones {self.path} was trained on "
                f"(id map fingerprint differs): use the shards it was trained on, or "
                f"shards grown from them with `mirkit shards build --append`"
            )
        return manifest, catalog

    def tabular(self, catalog: pl.DataFrame):
        """The items' numeric features, standardised as in training (runs saved before the
        scaling was recorded: by this catalogue's)."""
        columns = self.record.get("tabular_columns")
        if not columns:
            return None
        scaling = self.record.get("tabular_scaling") or tabular_scaling(catalog, columns)
        return tabular_features(catalog, columns, scaling)

    def load_model(self, device: torch.device | str = "cpu") -> TwoTower:
        return TwoTower.load(self.model_dir, map_location=device).to(device).eval()

    def load_user_tower(
        self, device: torch.device | str = "cpu", catalogue: np.ndarray | None = None
    ) -> SASRec:
        """Only the user tower (and the id table it reads): no content encoders. With the
        run's index embeddings (`catalogue`, [n_items + 1, dim]), items without training
        plays that it embeds (from content) enter histories by those embeddings
        (`SASRec.read_cold_items_as`)."""
        description = json.loads((self.model_dir / CONFIG_FILE).read_text())
        config = ModelConfig.from_dict(description["config"])
        tower = SASRec.from_config(config, description["n_items"])
        state = load_weights(self.model_dir / WEIGHTS_FILE, device)
        prefix = "user_tower."
        tower.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        content = set(config.modalities) - {"id"}  # an id-only index holds no content
        if catalogue is not None and content and "item_tower.warm" in state:
            table = torch.from_numpy(catalogue[: tower.ids.rows]).to(device)
            cold = cold_items(state["item_tower.warm"], table)
            if len(cold):
                tower.read_cold_items_as(cold, table[cold])
        return tower.to(device).eval()
