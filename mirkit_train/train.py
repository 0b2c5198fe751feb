"""`mirkit train`: the training loop, readable top to bottom.

setup (world, shards, split, model, data) -> for each epoch: steps, validation,
checkpoints -> curves and summary. How a batch becomes a loss is `objectives.py`; which
model and inputs, `resolve.py`; ranks and stop signals, `mirkit/distributed.py`.

Every rank runs the same number of steps (fixed from the index, not from the data a rank
happens to read), so collectives never wait on a rank that ran out of data. A stop signal
(SIGTERM, SIGINT) ends the step in progress on every rank, saves `last.pt` with the
position inside the epoch, and returns; `--resume` continues from that step.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from mirkit import log
from mirkit.data.content import local_shard_urls, tabular_columns
from mirkit.data.plays import SplitConfig, first_play_times, load_plays, make_split
from mirkit.distributed import (
    RankFailed,
    StopRequests,
    World,
    all_gather_objects,
    all_reduce_sum,
    any_rank,
    join,
    launch,
    leave,
    weights_checksum,
)
from mirkit.index import embed_catalogue, embeddable_items
from mirkit.models.two_tower import TwoTower
from mirkit.shards.manifest import load_manifest
from mirkit_train.config import TrainConfig
from mirkit_train.evaluate import baseline_reports, evaluate, validation_targets
from mirkit_train.item_major import ItemMajorStream, item_major_loader, steps_per_epoch
from mirkit_train.objectives import TrainingStep, parts_without_gradient
from mirkit_train.resolve import TrainingError, check_resumable, choose_path, resolve_model
from mirkit_train.run import RunDir, provenance
from mirkit_train.user_major import UserMajorBatches

__all__ = ["TrainingError", "train"]
logger = logging.getLogger("mirkit.train")


def train(cfg: TrainConfig, nproc_per_node: int = 1, verbosity: int = 0) -> dict:
    """Train one run; with nproc_per_node > 1, on that many local ranks. Returns rank
    0's summary. Under torchrun, call it with nproc_per_node = 1 on every rank."""
    if nproc_per_node == 1:
        return _rank(cfg)
    run = RunDir(Path(cfg.run))
    run.clear_failures()
    try:
        return {"run": cfg.run} | launch(_launched_rank, (cfg.to_dict(), verbosity), nproc_per_node)
    except RankFailed as err:
        failures = run.failures()
        if not failures:
            raise
        first, *then = failures
        raise RankFailed(
            f"rank {first['rank']} failed first: {first['error']}"
            + "".join(f"; then rank {f['rank']}: {f['error']}" for f in then)
        ) from err


@record
def _launched_rank(arguments: tuple[dict, int]) -> dict:
    values, verbosity = arguments
    log.configure(verbosity)
    return _rank(TrainConfig.from_dict(values))


def _rank(cfg: TrainConfig) -> dict:
    world, device = join(cfg.device)
    if world.distributed and "OMP_NUM_THREADS" not in os.environ:
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks))  # no oversubscription
    if not world.main:
        log.configure(-1)  # one progress bar and one log: rank 0's
    try:
        run = RunDir(Path(cfg.run))
        if not cfg.resume and run.checkpoint_path("last").exists():
            raise TrainingError(
                f"{run.path} already holds a run: pass --resume to continue it, "
                f"or choose another --run"
            )
        with run.logging_to_file() if world.main else nullcontext():
            return _train(cfg, run, world, device)
    except Exception as err:
        if world.distributed:
            run.record_failure(world.rank, err)
        raise
    finally:
        leave()


def _train(cfg: TrainConfig, run: RunDir, world: World, device: torch.device) -> dict:
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    random.seed(cfg.seed)

    # --- data: shards, plays, split ---
    shards = Path(cfg.shards)
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
    model_config, vocab_size, spec, tabular, groups = resolve_model(cfg, shards, manifest, catalog)
    path, loss_name = choose_path(cfg, model_config)
    model = TwoTower(model_config, n_items, vocab_size).to(device)
    if groups is not None:
        model.set_catalogue_groups(*(torch.from_numpy(g).to(device) for g in groups))
    if model.user_tower.freshness is not None:  # the whole log: read only causally
        first = torch.from_numpy(first_play_times(split.plays, n_items))
        model.user_tower.freshness.set_first_played(first.to(device))
    warm = np.unique(np.asarray(split.plays.items)[split.train_rows])
    model.item_tower.set_warm_items(torch.from_numpy(warm.astype(np.int64)).to(device))
    counts = split.train_counts(n_items)
    log_pop = torch.from_numpy(np.log((counts + 1) / (counts + 1).sum())).float().to(device)
    if cfg.init_from:
        copied = init_from_run(model, Path(cfg.init_from), device)
        logger.info("started from %s: %d weight tensors copied", cfg.init_from, copied)
    fixed = cfg.freeze + parts_without_gradient(model, path, loss_name)
    frozen = freeze(model, fixed)
    if frozen:
        logger.info("kept fixed: %d weight tensors (%s)", frozen, ", ".join(fixed))
    step_loss = TrainingStep(model, path, loss_name, log_pop, cfg, tabular)
    if world.distributed:
        # 1x1 convolutions' weight gradients have size-1 dimensions whose strides differ
        # from the bucket's; the layouts are the same memory order, the warning is noise
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        step_loss = DistributedDataParallel(
            step_loss,
            device_ids=[device] if device.type == "cuda" else None,
            broadcast_buffers=False,  # buffers are built identically on every rank
            gradient_as_bucket_view=True,
        )
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, world.rank]).generate_state(1)[0]))

    # --- batches: the same number of steps on every rank ---
    max_len = model_config.max_len
    if path == "user-major":
        memory = model.user_tower.history_len - max_len  # plays only the repeat part reads
        user_batches = UserMajorBatches(
            split, max_len, cfg.batch_size, cfg.seed, cfg.shift_windows, memory
        )
        steps = user_batches.steps_per_epoch(world.size)
    else:
        readers = world.size * max(1, cfg.workers)
        if len(urls) < readers:
            raise TrainingError(
                f"{len(urls)} shards cannot feed {world.size} ranks x "
                f"{max(1, cfg.workers)} loader workers (each reader should have shards of "
                f"its own to start from): rebuild the shards with a smaller "
                f"--items-per-shard, or lower --workers"
            )
        steps = steps_per_epoch(
            split, n_items, cfg.contexts, cfg.items_per_batch, cfg.emission_cap, world.size
        )
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
        "input_spec": asdict(spec),
        "tabular_columns": tabular_columns(catalog) if tabular is not None else None,
        "world_size": world.size,
        "steps_per_epoch": steps,
        "shards_fingerprints": manifest["fingerprints"],
        **provenance(device),
    }

    # --- resume: the epoch, and the step inside it, where the last checkpoint stopped ---
    epoch0, first_step, step, best, stale = 0, 0, 0, -1.0, 0
    if cfg.resume and run.checkpoint_path("last").exists():
        state = run.load_checkpoint("last")
        check_resumable(state, manifest, model_config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch0, first_step = state["epoch"], state["epoch_step"]
        step, best, stale = state["step"], state["best"], state["stale"]
        if state["world_size"] != world.size:
            logger.warning(
                "the checkpoint was written by %d ranks, this run has %d: its epoch "
                "is continued with this world's steps per epoch",
                state["world_size"],
                world.size,
            )
        if first_step >= steps:
            epoch0, first_step = epoch0 + 1, 0
        rng = state["torch_rng"]
        torch.set_rng_state(rng[world.rank % len(rng)])
        logger.info("resumed %s at epoch %d, step %d", run.path, epoch0 + 1, step)
    if world.main:
        run.write_config(record)  # only once the run is known to be usable

    def save_last(epoch: int, epoch_step: int) -> dict:
        ranks = all_gather_objects(  # a collective: every rank calls save_last
            world,
            {"rng": torch.get_rng_state(), "step": step, "weights": weights_checksum(model)},
        )
        if len({r["weights"] for r in ranks}) > 1 or len({r["step"] for r in ranks}) > 1:
            raise TrainingError(
                "the ranks' weights or step counts differ "
                f"({[(r['step'], r['weights']) for r in ranks]}): this is a bug in the "
                "trainer or a nondeterministic kernel; please report it"
            )
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "epoch_step": epoch_step,
            "step": step,
            "best": best,
            "stale": stale,
            "world_size": world.size,
            "torch_rng": [r["rng"] for r in ranks],
            "rank_steps": [r["step"] for r in ranks],
            "rank_weights": [r["weights"] for r in ranks],
            "fingerprints": manifest["fingerprints"],
            "model_config": model_config.to_dict(),
        }
        if world.main:
            run.save_checkpoint("last", state)
        return state

    val_targets = validation_targets(split, n_items, cfg.val_limit, cfg.seed)
    usable = embeddable_items(model, catalog)[: n_items + 1]
    val_baselines = baseline_reports(val_targets, cfg.exclude_seen)
    autocast = device.type == "cuda" and cfg.bf16  # bf16 needs no gradient scaler
    summary: dict = {}
    stopped = None
    with StopRequests(world, device) as stop, log.progress() as bar:
        for epoch in range(epoch0, cfg.epochs):
            # --- one epoch of steps ---
            model.train()
            start = first_step if epoch == epoch0 else 0
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, completed=start)
            if path == "user-major":
                batches = user_batches.epoch(epoch, start, world.rank, world.size)
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
                    rank=world.rank,
                    tabular=tabular,
                    first_step=start,
                )
                batches = iter(item_major_loader(stream, cfg.workers))
            waited = computed = 0.0
            samples_total, losses = 0, []
            for epoch_step in range(start, steps):
                t0 = time.perf_counter()
                batch = next(batches)
                t1 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss, samples = step_loss(batch)
                nonfinite, stop_requested = any_rank(
                    world, device, not bool(torch.isfinite(loss)), stop.received is not None
                )
                if nonfinite:
                    raise TrainingError(
                        f"the loss became {loss.item()} at step {step + 1} (on at least one "
                        f"rank): training stopped; {run.checkpoint_path('last')} holds the "
                        f"last good state. Lower --lr or check the data"
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
                samples_total += samples * world.size
                losses.append(loss.item())
                rate = samples_total / (waited + computed)
                bar.update(
                    task,
                    advance=1,
                    description=(
                        f"epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.3f} {rate:.0f} pairs/s"
                    ),
                )
                if world.main and (step % 10 == 0 or step == 1):
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
                if stop_requested:
                    stopped = epoch_step + 1
                    break
            del batches
            if stopped is not None:
                save_last(epoch, stopped)
                (logger.warning if world.main else logger.debug)(
                    "stopped by %s at step %d (epoch %d, step %d of %d); %s holds it: "
                    "continue with --resume",
                    stop.received or "a signal to another rank",
                    step,
                    epoch + 1,
                    stopped,
                    steps,
                    run.checkpoint_path("last"),
                )
                summary = {"stopped at step": step, "resume with": "--resume"}
                break

            # --- validation (split across ranks), checkpoints ---
            share = (world.rank, world.size)
            table = embed_catalogue(model, n_items, urls, spec, device, 64, tabular, share)
            table = all_reduce_sum(world, table)
            table[torch.from_numpy(~usable).to(device)] = 0.0  # as `mirkit index` does
            with model.reading_cold_items(table):  # as `mirkit eval` and serving do
                report = evaluate(model, val_targets, table, cfg.exclude_seen, world, val_baselines)
            ndcg = report["model"]["NDCG@10"]
            row = {
                "step": step,
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "samples_per_s": samples_total / max(waited + computed, 1e-9),
                "data_wait_fraction": waited / max(waited + computed, 1e-9),
                "seconds": round(time.perf_counter() - started, 1),  # time-to-quality curves
            }
            for who, metrics in report.items():
                prefix = "val" if who == "model" else f"val_{who}"
                row |= {f"{prefix}_{k}": v for k, v in metrics.items() if k != "n"}
            best_baseline = max(val_baselines, key=lambda b: val_baselines[b]["NDCG@10"])
            logger.info(
                "epoch %d: loss %.4f, val NDCG@10 %.4f (best baseline: %s %.4f), %.0f "
                "pairs/s, data wait %.0f%%",
                epoch + 1,
                row["train_loss"],
                ndcg,
                best_baseline,
                val_baselines[best_baseline]["NDCG@10"],
                row["samples_per_s"],
                100 * row["data_wait_fraction"],
            )
            improved = ndcg > best
            best, stale = (ndcg, 0) if improved else (best, stale + 1)
            state = save_last(epoch, steps)
            if world.main:
                run.log_metrics(row)
                if improved:
                    run.save_checkpoint("best", state)
                    model.save(run.path / "model")
            summary = {
                "val NDCG@10 (best)": round(best, 4),
                "val Recall@10 (last epoch)": round(report["model"]["Recall@10"], 4),
                f"{best_baseline} NDCG@10 (best baseline)": round(
                    val_baselines[best_baseline]["NDCG@10"], 4
                ),
                f"{best_baseline} Recall@10": round(val_baselines[best_baseline]["Recall@10"], 4),
            }
            if cfg.early_stopping and stale >= cfg.early_stopping:
                logger.info("no better NDCG@10 for %d epochs: stopping early", stale)
                break
    if world.main:
        run.plot()
    return {
        "run": str(run.path),
        "path": path,
        "loss": loss_name,
        "ranks": world.size,
        "steps": step,
        **summary,
        "validation targets": len(val_targets.rows),
        "items": n_items,
        "seconds": round(time.perf_counter() - started, 1),
    }


def init_from_run(model: TwoTower, run: Path, device: torch.device) -> int:
    """Copy every tensor of `run`'s best model whose name and shape match; the rest keeps
    its initialisation. Returns how many tensors were copied."""
    weights = run / "model" / "model.pt"
    if not weights.exists():
        raise TrainingError(f"--init-from {run}: {weights} does not exist (train that run first)")
    state = torch.load(weights, map_location=device, weights_only=True)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise TrainingError(f"--init-from {run}: no weight matches this model (other sizes?)")
    model.load_state_dict(matched, strict=False)
    return len(matched)


def freeze(model: TwoTower, parts: tuple[str, ...]) -> int:
    """Stop training every parameter whose name starts with one of `parts` (a shared
    tensor is frozen under all its names). Returns how many tensors were frozen."""
    names = dict(model.named_parameters(remove_duplicate=False))
    unknown = [p for p in parts if not any(n.startswith(p) for n in names)]
    if unknown:
        top = sorted({n.split(".")[0] for n in names})
        raise TrainingError(
            f"--freeze {','.join(unknown)}: no such part of this model (its parts: "
            f"{', '.join(top)}; deeper names such as item_tower.audio work too)"
        )
    frozen = {id(p): p for n, p in names.items() if n.startswith(tuple(parts))}
    for p in frozen.values():
        p.requires_grad_(False)
    return len(frozen)


def lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
