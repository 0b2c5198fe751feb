"""`mirkit train`: the training loop, readable top to bottom.

setup (shards, split, model, data) -> for each epoch: steps, validation, checkpoints ->
curves and summary. The two data paths differ only in how a batch becomes a loss
(`user_major_loss`, `item_major_loss`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mirkit import log
from mirkit.data.content import InputSpec, local_shard_urls, tabular_features
from mirkit.data.plays import SplitConfig, load_plays, make_split
from mirkit.models.config import PRESETS, ModelConfig
from mirkit.models.item_tower import ItemBatch
from mirkit.models.losses import (
    full_softmax_loss,
    gathered_info_nce,
    info_nce,
    sampled_softmax_loss,
)
from mirkit.models.two_tower import TwoTower
from mirkit.shards.manifest import load_manifest
from mirkit_train.config import TrainConfig
from mirkit_train.evaluate import embed_catalogue, evaluate, validation_rows
from mirkit_train.item_major import (
    ItemMajorBatch,
    ItemMajorStream,
    item_major_loader,
    steps_per_epoch,
)
from mirkit_train.run import RunDir, provenance
from mirkit_train.user_major import UserMajorBatches

logger = logging.getLogger("mirkit.train")
CONTENT = {"audio", "lyrics", "cover"}
CHECKED_FINGERPRINTS = ("id_map", "content_config", "interactions")


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


def resolve_model(
    cfg: TrainConfig, shards: Path, manifest: dict, catalog: pl.DataFrame
) -> tuple[ModelConfig, int | None, InputSpec, np.ndarray | None]:
    """The model config, the text vocabulary, what each item must provide, and the
    tabular features, from the preset, the options and the shards."""
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
        columns = [c for c, t in catalog.schema.items() if t == pl.Float32]
        if not columns:
            raise TrainingError(
                f"{shards}/catalog.parquet has no numeric track features; "
                f"drop 'tabular' from the modalities"
            )
        tabular = tabular_features(catalog, columns)
        model = replace(model, n_tabular=len(columns))
    spec = InputSpec(
        mel_frames=model.mel_frames if "audio" in used else None,
        n_mels=manifest["content_config"]["n_mels"],
        cover_size=model.cover_size if "cover" in used else None,
        max_tokens=text.max_tokens if "lyrics" in used else None,
        pad_token_id=pad,
        retokenize_with=retokenize,
    )
    return model, vocab_size, spec, tabular


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
    return path, loss


def items_by_id(model: TwoTower, ids: torch.Tensor, tabular: np.ndarray | None) -> torch.Tensor:
    batch = ItemBatch(item_ids=ids)
    if tabular is not None:
        batch.tabular = torch.from_numpy(tabular[ids.cpu().numpy()]).to(ids.device)
    return model.items(batch)


def user_major_loss(
    model: TwoTower,
    batch,
    loss: str,
    n_items: int,
    log_pop: torch.Tensor,
    cfg: TrainConfig,
    tabular: np.ndarray | None,
) -> tuple[torch.Tensor, int]:
    inputs, targets = (t.to(log_pop.device) for t in batch)
    hidden = model.user_tower.sequence(inputs)
    mask = targets > 0
    h, t = hidden[mask], targets[mask]
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
    table = items_by_id(model, torch.arange(n_items + 1, device=t.device), tabular)
    if loss == "full-softmax":
        return full_softmax_loss(h, table, t, scale), len(t)
    negatives = torch.randint(1, n_items + 1, (cfg.sampled_negatives,), device=t.device)
    uniform = torch.full((n_items + 1,), -math.log(n_items), device=t.device)
    return sampled_softmax_loss(h, table, t, negatives, scale, uniform), len(t)


def item_major_loss(
    model: TwoTower, batch: ItemMajorBatch, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, int]:
    m, k, length = batch.histories.shape
    users = model.users(batch.histories.view(m * k, length).to(device))
    items = model.items(batch.items.to(device))
    ids = batch.items.item_ids.to(device)
    labels = torch.arange(m, device=device).repeat_interleave(k)
    log_q = batch.log_q.to(device).float() if cfg.logq else None
    return gathered_info_nce(
        users, items, labels, ids[labels], ids, model.temperature(), log_q
    ), m * k


def lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


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


def train(cfg: TrainConfig) -> dict:
    """Train one run (its log goes to runs/NAME/train.log for the duration of the call)."""
    run = RunDir(Path(cfg.run))
    if not cfg.resume and run.checkpoint_path("last").exists():
        raise TrainingError(
            f"{run.path} already holds a run: pass --resume to continue it, or choose another --run"
        )
    with run.logging_to_file():
        return _train(cfg, run)


def _train(cfg: TrainConfig, run: RunDir) -> dict:
    started = time.perf_counter()
    shards = Path(cfg.shards)
    device = torch.device(
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # --- data: shards, plays, split ---
    manifest = load_manifest(shards)
    catalog = pl.read_parquet(shards / "catalog.parquet")
    n_items = int(catalog["item_id"].max())
    split = make_split(
        load_plays(shards, manifest["fingerprints"]["interactions"]),
        SplitConfig(cfg.split, drop_repeats=cfg.drop_repeats, k_core=cfg.k_core),
    )
    if not len(split.train_rows) or not len(split.val_rows):
        raise TrainingError(
            f"the {cfg.split} split of {shards} leaves no training or validation "
            f"plays; use more data or another split"
        )
    urls = list(cfg.shard_urls) or local_shard_urls(shards, manifest)

    # --- model ---
    model_config, vocab_size, spec, tabular = resolve_model(cfg, shards, manifest, catalog)
    path, loss_name = choose_path(cfg, model_config)
    model = TwoTower(model_config, n_items, vocab_size).to(device)
    warm = np.unique(np.asarray(split.plays.items)[split.train_rows])
    model.item_tower.set_warm_items(torch.from_numpy(warm.astype(np.int64)).to(device))
    counts = np.bincount(np.asarray(split.plays.items)[split.train_rows], minlength=n_items + 1)
    log_pop = torch.from_numpy(np.log((counts + 1) / (counts + 1).sum())).float().to(device)

    # --- batches ---
    max_len = model_config.max_len
    if path == "user-major":
        user_batches = UserMajorBatches(split, max_len, cfg.batch_size, cfg.seed)
        steps = user_batches.steps_per_epoch()
    else:
        steps = steps_per_epoch(split, n_items, cfg.contexts, cfg.items_per_batch, cfg.emission_cap)
    steps = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(min(cfg.warmup_steps, cfg.epochs * steps // 10), cfg.epochs * steps)
    )
    record = {
        "train": cfg.to_dict(),
        "model": model_config.to_dict(),
        "n_items": n_items,
        "vocab_size": vocab_size,
        "path": path,
        "loss": loss_name,
        "shards_fingerprints": manifest["fingerprints"],
        **provenance(device),
    }

    epoch0, step, best, stale = 0, 0, -1.0, 0
    if cfg.resume and run.checkpoint_path("last").exists():
        state = run.load_checkpoint("last")
        check_resumable(state, manifest, model_config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch0, step, best, stale = state["epoch"] + 1, state["step"], state["best"], state["stale"]
        torch.set_rng_state(state["torch_rng"])
        logger.info("resumed %s at epoch %d, step %d", run.path, epoch0, step)
    run.write_config(record)  # only once the run is known to be usable

    val_rows = validation_rows(split, cfg.val_limit, cfg.seed)
    autocast = device.type == "cuda" and cfg.bf16
    summary: dict = {}
    with log.progress() as bar:
        for epoch in range(epoch0, cfg.epochs):
            # --- one epoch of steps ---
            model.train()
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps)
            if path == "user-major":
                batches = user_batches.epoch(epoch)
            else:
                stream = ItemMajorStream(
                    urls,
                    split,
                    n_items,
                    spec,
                    cfg.contexts,
                    cfg.items_per_batch,
                    max_len,
                    cfg.emission_cap,
                    cfg.seed,
                    epoch,
                    tabular=tabular,
                )
                batches = iter(item_major_loader(stream, cfg.workers))
            waited = computed = 0.0
            samples_total, losses = 0, []
            for _ in range(steps):
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    if path == "user-major":
                        loss, samples = user_major_loss(
                            model, batch, loss_name, n_items, log_pop, cfg, tabular
                        )
                    else:
                        loss, samples = item_major_loss(model, batch, cfg, device)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at step {step}: training "
                        f"stopped; {run.checkpoint_path('last')} holds the last "
                        f"good state. Lower --lr or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                waited += t1 - t0
                computed += time.perf_counter() - t1
                samples_total += samples
                losses.append(loss.item())
                rate = samples_total / (waited + computed)
                bar.update(
                    task,
                    advance=1,
                    description=(
                        f"epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.3f} {rate:.0f} pairs/s"
                    ),
                )
                if step % 10 == 0 or step == 1:
                    run.log_metrics(
                        {
                            "step": step,
                            "epoch": epoch,
                            "loss": losses[-1],
                            "lr": scheduler.get_last_lr()[0],
                            "temperature": 1.0 / model.temperature().item(),
                            "samples_per_s": rate,
                            "data_wait_fraction": waited / (waited + computed),
                        }
                    )
            del batches

            # --- validation, checkpoints ---
            table = embed_catalogue(model, n_items, urls, spec, device, tabular=tabular)
            report = evaluate(model, split, val_rows, table, n_items, max_len, cfg.exclude_seen)
            ndcg = report["model"]["NDCG@10"]
            row = {
                "step": step,
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "samples_per_s": samples_total / (waited + computed),
                "data_wait_fraction": waited / (waited + computed),
            }
            for who, metrics in report.items():
                prefix = "val" if who == "model" else f"val_{who}"
                row |= {f"{prefix}_{k}": v for k, v in metrics.items() if k != "n"}
            run.log_metrics(row)
            logger.info(
                "epoch %d: loss %.4f, val NDCG@10 %.4f (most-popular %.4f), %.0f pairs/s, "
                "data wait %.0f%%",
                epoch + 1,
                row["train_loss"],
                ndcg,
                report["most-popular"]["NDCG@10"],
                row["samples_per_s"],
                100 * row["data_wait_fraction"],
            )
            improved = ndcg > best
            best, stale = (ndcg, 0) if improved else (best, stale + 1)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
                "best": best,
                "stale": stale,
                "torch_rng": torch.get_rng_state(),
                "fingerprints": manifest["fingerprints"],
                "model_config": model_config.to_dict(),
            }
            run.save_checkpoint("last", state)
            if improved:
                run.save_checkpoint("best", state)
                model.save(run.path / "model")
            summary = {
                "val NDCG@10 (best)": round(best, 4),
                "val Recall@10 (last epoch)": round(report["model"]["Recall@10"], 4),
                "most-popular NDCG@10": round(report["most-popular"]["NDCG@10"], 4),
                "most-popular Recall@10": round(report["most-popular"]["Recall@10"], 4),
            }
            if cfg.early_stopping and stale >= cfg.early_stopping:
                logger.info("no better NDCG@10 for %d epochs: stopping early", stale)
                break
    run.plot()
    return {
        "run": str(run.path),
        "path": path,
        "loss": loss_name,
        "steps": step,
        **summary,
        "validation targets": len(val_rows),
        "items": n_items,
        "seconds": round(time.perf_counter() - started, 1),
    }
