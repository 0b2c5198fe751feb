"""Before the first step: which model, which inputs, which data path, and whether a
checkpoint can be continued with these options and shards."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from mirkit.data.content import (
    InputSpec,
    artist_album_ids,
    tabular_columns,
    tabular_features,
    tabular_scaling,
)
from mirkit.errors import MirkitError
from mirkit.models.config import PRESETS, ModelConfig
from mirkit_train.config import TrainConfig

logger = logging.getLogger("mirkit.train")
CONTENT = {"audio", "lyrics", "cover"}
CHECKED_FINGERPRINTS = ("id_map", "content_config", "interactions")


class TrainingError(MirkitError, RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


def resolve_model(
    cfg: TrainConfig, shards: Path, manifest: dict, catalog: pl.DataFrame
) -> tuple[ModelConfig, int | None, InputSpec, np.ndarray | None, tuple | None]:
    """The model config, the text vocabulary, what each item must provide, the tabular
    features and the artist and album of each item id (`artist_album_ids`; None without
    them), from the preset, the options and the shards."""
    model = PRESETS[cfg.preset]
    if cfg.modalities:
        model = model.with_modalities(tuple(cfg.modalities))
    text = replace(model.text, gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.text_model:
        text = replace(text, model=cfg.text_model)
    if cfg.lora_rank:
        text = replace(text, lora_rank=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank)
    model = replace(
        model,
        text=text,
        max_len=cfg.max_len or model.max_len,
        dropout=model.dropout if cfg.dropout is None else cfg.dropout,
        time_inputs=cfg.time_inputs,
        repeat=cfg.repeat,
        continuation=cfg.continuation,
        reweigh_history=cfg.reweigh_history,
        floored_activation=cfg.floored_activation,
        freshness=cfg.freshness,
        content_for=cfg.content_for,
        repeat_memory=model.repeat_memory if cfg.repeat_memory is None else cfg.repeat_memory,
    )
    used = set(model.modalities)
    vocab_size, retokenize, pad = None, None, 0
    if "lyrics" in used:
        if manifest["tokenizer"] is None:
            raise TrainingError(
                f"{shards} has no lyrics (no tokenizer); drop 'lyrics' from the modalities"
            )
        from transformers import AutoTokenizer

        from mirkit.shards.text import vocab_sha256

        source = str(shards / "tokenizer") if text.model.startswith("config:") else text.model
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        vocab_size, pad = len(tokenizer), tokenizer.pad_token_id or 0
        if vocab_sha256(tokenizer) != manifest["tokenizer"]["vocab_sha256"]:
            retokenize = source
            logger.warning(
                "the text model's tokenizer differs from the shards' (%s): the "
                "stored lyrics are tokenised in the loader workers, which is slower",
                manifest["tokenizer"]["source"],
            )
    tabular = None
    if "tabular" in used:
        columns = tabular_columns(catalog)
        if not columns:
            raise TrainingError(
                f"{shards}/catalog.parquet has no numeric track features; "
                f"drop 'tabular' from the modalities"
            )
        tabular = tabular_features(catalog, columns, tabular_scaling(catalog, columns))
        model = replace(model, n_tabular=len(columns))
    groups = None
    if cfg.artists and "id" in used and "artist" in catalog.columns:
        groups = artist_album_ids(catalog, int(catalog["item_id"].max()))
        model = replace(model, n_artists=int(groups[0].max()), n_albums=int(groups[1].max()))
    spec = InputSpec(
        mel_frames=model.mel_frames if "audio" in used else None,
        n_mels=manifest["content_config"]["n_mels"],
        cover_size=model.cover_size if "cover" in used else None,
        max_tokens=text.max_tokens if "lyrics" in used else None,
        pad_token_id=pad,
        retokenize_with=retokenize,
    )
    return model, vocab_size, spec, tabular, groups


def choose_path(cfg: TrainConfig, model: ModelConfig) -> tuple[str, str]:
    """(data path, loss): content models stream items; id-only models read sequences."""
    content = bool(set(model.modalities) & CONTENT)
    path = cfg.path if cfg.path != "auto" else ("item-major" if content else "user-major")
    if path == "user-major" and content:
        raise TrainingError(
            "the user-major path reads no item content: use --path item-major "
            "for audio, lyrics or cover models"
        )
    loss = (
        cfg.loss if cfg.loss != "auto" else ("full-softmax" if path == "user-major" else "in-batch")
    )
    if path == "item-major" and loss != "in-batch":
        raise TrainingError(f"the item-major path trains with in-batch negatives, not {loss}")
    if cfg.mask_seen and loss != "full-softmax":
        raise TrainingError(f"--mask-seen applies to the full softmax, not to {loss}")
    if not 0 <= cfg.history_dropout < 1:
        raise TrainingError(
            f"--history-dropout {cfg.history_dropout} is not a probability below 1 "
            "(1 would hide every history); 0.3 suits data without repeats, 0 turns it off"
        )
    return path, loss


def check_resumable(state: dict, manifest: dict, model: ModelConfig) -> None:
    for name in CHECKED_FINGERPRINTS:
        if state["fingerprints"][name] != manifest["fingerprints"][name]:
            raise TrainingError(
                f"the checkpoint was trained on other shards ({name} fingerprint "
                f"differs): resume with the shards it was trained on, or start "
                f"a new run"
            )
    if state["model_config"] != model.to_dict():
        raise TrainingError(
            "the checkpoint's model config differs from these options: resume "
            "with the same options, or start a new run"
        )
