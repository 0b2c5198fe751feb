"""`mirkit train`: the training loop, readable top to bottom.

setup (`load_data`, `build_model`, `training_objective`, `batch_source`, the optimiser,
`resume`) -> for each epoch: `train_epoch`, `Validation.run`, `Checkpointer.save_last`
-> curves and summary. How a batch becomes a loss is `objectives.py`; which
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
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from mirkit import log
from mirkit.data.content import InputSpec, local_shard_urls, tabular_columns, tabular_scaling
from mirkit.data.plays import Split, SplitConfig, first_play_times, load_plays, make_split
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
from mirkit.files import load_weights
from mirkit.ids import ItemIds
from mirkit.models.config import ModelConfig
from mirkit.models.two_tower import TwoTower
from mirkit.models.user_tower import HISTORY_SCORERS
from mirkit.serving.index import embed_catalogue, embeddable_items
from mirkit.shards.manifest import load_manifest
from mirkit.shards.verify import shard_file_problem
from mirkit_train.config import TrainConfig
from mirkit_train.evaluate import baseline_reports, evaluate, validation_targets
from mirkit_train.item_major import ItemMajorBatches
from mirkit_train.objectives import TrainingStep, parts_without_gradient
from mirkit_train.resolve import TrainingError, check_resumable, choose_path, resolve_model
from mirkit_train.run import RunDir, provenance
from mirkit_train.user_major import UserMajorBatches

__all__ = ["STOPPED_EXIT_STATUS", "TrainingError", "train"]
logger = logging.getLogger("mirkit.train")
STOPPED_EXIT_STATUS = 75  # EX_TEMPFAIL: `mirkit train` stopped by a signal, resumable


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


@dataclass
class Data:
    """What a run trains and validates on."""

    shards: Path
    manifest: dict
    catalog: pl.DataFrame
    n_items: int
    split: Split
    urls: list[str]  # the item shards (the item-major path and the catalogue table)


@dataclass
class Progress:
    """Where the run is: what a checkpoint saves and `--resume` restores."""

    epoch: int = 0
    epoch_step: int = 0  # steps done inside `epoch`
    step: int = 0
    best: float = -1.0  # best validation NDCG@10 so far
    stale: int = 0  # epochs since it improved


@dataclass
class EpochStats:
    losses: list[float] = field(default_factory=list)
    waited: float = 0.0  # seconds waiting for batches
    computed: float = 0.0  # seconds in steps
    samples: int = 0  # training pairs, all ranks
    stopped_at: int | None = None  # the epoch step a stop signal ended the epoch after
    validated: float = 0.0  # seconds of the validation after the epoch

    def validation_share(self) -> float:
        """Validation's share of the epoch's time (kept under a tenth by `--val-limit`)."""
        return self.validated / max(self.waited + self.computed + self.validated, 1e-9)

    def rate(self) -> float:
        return self.samples / max(self.waited + self.computed, 1e-9)

    def wait_fraction(self) -> float:
        return self.waited / max(self.waited + self.computed, 1e-9)


def _train(cfg: TrainConfig, run: RunDir, world: World, device: torch.device) -> dict:
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    random.seed(cfg.seed)

    data = load_data(cfg)
    model, model_config, spec, tabular = build_model(cfg, data, device)
    if model.item_tower.content_modalities and not cfg.shard_urls:
        check_shard_files(data)
    path, loss_name = choose_path(cfg, model_config)
    objective = training_objective(cfg, data, model, path, loss_name, tabular, world, device)
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, world.rank]).generate_state(1)[0]))
    batches = batch_source(cfg, data, model, path, spec, tabular, world)
    steps = batches.steps_per_epoch(world.size)
    steps = min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(min(cfg.warmup_steps, cfg.epochs * steps // 10), cfg.epochs * steps)
    )
    progress = Progress()
    if cfg.resume and run.checkpoint_path("last").exists():
        progress = resume(run, world, data, model, model_config, optimizer, scheduler, steps)
    if world.main:  # only once the run is known to be usable
        run.write_config(
            run_record(cfg, data, model, path, loss_name, spec, tabular, world, steps, device)
        )
    checkpoint = Checkpointer(run, world, model, optimizer, scheduler, data.manifest, model_config)
    validation = Validation(cfg, data, model, spec, tabular, world, device)

    summary: dict = {}
    with StopRequests(world, device) as stop, log.progress() as bar:
        for epoch in range(progress.epoch, cfg.epochs):
            first_step = progress.epoch_step if epoch == progress.epoch else 0
            epoch_batches = batches.epoch(epoch, first_step, world.rank, world.size)
            stats = train_epoch(
                cfg, run, world, model, objective, optimizer, scheduler, epoch_batches,
                (epoch, first_step, steps), progress, stop, bar, device,
            )  # fmt: skip
            if stats.stopped_at is not None:
                progress.epoch, progress.epoch_step = epoch, stats.stopped_at
                summary = checkpoint.save_stopped(progress, steps, stop.received)
                break

            validating = time.perf_counter()
            report = validation.run()
            stats.validated = time.perf_counter() - validating
            row = epoch_row(progress.step, epoch, stats, report, validation.best_baseline, started)
            ndcg = report["model"]["NDCG@10"]
            improved = ndcg > progress.best
            progress.best = max(progress.best, ndcg)
            progress.stale = 0 if improved else progress.stale + 1
            progress.epoch, progress.epoch_step = epoch, steps
            state = checkpoint.save_last(progress)
            if world.main:
                run.log_metrics(row)
                if improved:
                    run.save_checkpoint("best", state)
                    model.save(run.path / "model")
            summary = validation.summary(report, progress.best)
            if cfg.early_stopping and progress.stale >= cfg.early_stopping:
                logger.info("no better NDCG@10 for %d epochs: stopping early", progress.stale)
                break
    if world.main:
        run.plot()
    return {
        "run": str(run.path),
        "path": path,
        "loss": loss_name,
        "ranks": world.size,
        "steps": progress.step,
        **summary,
        "validation targets": len(validation.targets.rows),
        "items": data.n_items,
        "seconds": round(time.perf_counter() - started, 1),
    }


def load_data(cfg: TrainConfig) -> Data:
    """The shards' manifest, catalogue and plays, split into training and held-out rows."""
    shards = Path(cfg.shards)
    manifest = load_manifest(shards)
    catalog = pl.read_parquet(shards / "catalog.parquet")
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
    n_items = int(catalog["item_id"].max())
    return Data(shards, manifest, catalog, n_items, split, urls)


def check_shard_files(data: Data) -> None:
    """Size and sha256 of every item shard against the manifest, before a content model
    reads them: a flipped byte or a shard replaced after the build would otherwise train
    silently (or fail later, deep in a loader worker)."""
    started = time.perf_counter()
    problems = [p for s in data.manifest["shards"] if (p := shard_file_problem(data.shards, s))]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise TrainingError(
            f"{data.shards} does not match its manifest ({shown}): rebuild the shards "
            f"(`mirkit shards build`), and check them with `mirkit shards verify`"
        )
    logger.info(
        "checked %d shards (size and sha256) in %.1f s",
        len(data.manifest["shards"]),
        time.perf_counter() - started,
    )


def build_model(
    cfg: TrainConfig, data: Data, device: torch.device
) -> tuple[TwoTower, ModelConfig, InputSpec, np.ndarray | None]:
    """The model (initialised, or from --init-from), with what it knows of the catalogue:
    artists and albums, first plays, which items have training plays."""
    model_config, vocab_size, spec, tabular, groups = resolve_model(
        cfg, data.shards, data.manifest, data.catalog
    )
    model = TwoTower(model_config, data.n_items, vocab_size).to(device)
    if groups is not None:
        model.set_catalogue_groups(*(torch.from_numpy(g).to(device) for g in groups))
    if model.user_tower.freshness is not None:  # the whole log: read only causally
        first = torch.from_numpy(first_play_times(data.split.plays, data.n_items))
        model.user_tower.freshness.set_first_played(first.to(device))
    warm = np.unique(np.asarray(data.split.plays.items)[data.split.train_rows])
    model.item_tower.set_warm_items(torch.from_numpy(warm.astype(np.int64)).to(device))
    if cfg.init_from:
        copied = init_from_run(model, Path(cfg.init_from), device)
        logger.info("started from %s: %d weight tensors copied", cfg.init_from, copied)
    return model, model_config, spec, tabular


def training_objective(
    cfg: TrainConfig,
    data: Data,
    model: TwoTower,
    path: str,
    loss_name: str,
    tabular: np.ndarray | None,
    world: World,
    device: torch.device,
) -> nn.Module:
    """The module whose forward(batch) is (loss, pairs): `TrainingStep`, under DDP with
    several ranks, with the parts it cannot train kept fixed."""
    fixed = cfg.freeze + parts_without_gradient(model, path, loss_name)
    frozen = freeze(model, fixed)
    if frozen:
        logger.info("kept fixed: %d weight tensors (%s)", frozen, ", ".join(fixed))
    counts = data.split.train_counts(data.n_items)
    log_pop = torch.from_numpy(np.log((counts + 1) / (counts + 1).sum())).float().to(device)
    objective = TrainingStep(model, path, loss_name, log_pop, cfg, tabular)
    if not world.distributed:
        return objective
    # 1x1 convolutions' weight gradients have size-1 dimensions whose strides differ
    # from the bucket's; the layouts are the same memory order, the warning is noise
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    return DistributedDataParallel(
        objective,
        device_ids=[device] if device.type == "cuda" else None,
        broadcast_buffers=False,  # buffers are built identically on every rank
        gradient_as_bucket_view=True,
    )


def batch_source(
    cfg: TrainConfig,
    data: Data,
    model: TwoTower,
    path: str,
    spec: InputSpec,
    tabular: np.ndarray | None,
    world: World,
) -> UserMajorBatches | ItemMajorBatches:
    """The epochs of batches of the data path; every rank runs the same number of steps."""
    max_len = model.config.max_len
    if path == "user-major":
        memory = model.user_tower.history_len - max_len  # plays only the repeat part reads
        return UserMajorBatches(
            data.split, max_len, cfg.batch_size, cfg.seed, cfg.shift_windows, memory
        )
    readers = world.size * max(1, cfg.workers)
    if len(data.urls) < readers:
        raise TrainingError(
            f"{len(data.urls)} shards cannot feed {world.size} ranks x "
            f"{max(1, cfg.workers)} loader workers (each reader should have shards of "
            f"its own to start from): rebuild the shards with a smaller "
            f"--items-per-shard, or lower --workers"
        )
    return ItemMajorBatches(data.urls, data.split, data.n_items, spec, cfg, max_len, tabular)


def run_record(
    cfg: TrainConfig,
    data: Data,
    model: TwoTower,
    path: str,
    loss_name: str,
    spec: InputSpec,
    tabular: np.ndarray | None,
    world: World,
    steps: int,
    device: torch.device,
) -> dict:
    """The run's config.json: its options, model, data and software."""
    return {
        "train": cfg.to_dict(),
        "model": model.config.to_dict(),
        "n_items": data.n_items,
        "vocab_size": model.vocab_size,
        "path": path,
        "loss": loss_name,
        "input_spec": asdict(spec),
        "tabular_columns": tabular_columns(data.catalog) if tabular is not None else None,
        "tabular_scaling": (
            tabular_scaling(data.catalog, tabular_columns(data.catalog))
            if tabular is not None
            else None
        ),
        "world_size": world.size,
        "steps_per_epoch": steps,
        "shards_fingerprints": data.manifest["fingerprints"],
        **provenance(device),
    }


def resume(
    run: RunDir,
    world: World,
    data: Data,
    model: TwoTower,
    model_config: ModelConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
) -> Progress:
    """Restore the weights, optimiser, schedule and random state of `last.pt`; returns
    where to continue (the epoch, and the step inside it, where it stopped)."""
    state = run.load_checkpoint("last")
    check_resumable(state, data.manifest, model_config)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = Progress(
        state["epoch"], state["epoch_step"], state["step"], state["best"], state["stale"]
    )
    if state["world_size"] != world.size:
        logger.warning(
            "the checkpoint was written by %d ranks, this run has %d: its epoch "
            "is continued with this world's steps per epoch",
            state["world_size"],
            world.size,
        )
    if progress.epoch_step >= steps:
        progress.epoch, progress.epoch_step = progress.epoch + 1, 0
    rng = state["torch_rng"]
    torch.set_rng_state(rng[world.rank % len(rng)])
    logger.info("resumed %s at epoch %d, step %d", run.path, progress.epoch + 1, progress.step)
    return progress


class Checkpointer:
    """Saves `last.pt` (every rank takes part: the ranks' weights and step counts are
    compared, and their random states kept)."""

    def __init__(self, run, world, model, optimizer, scheduler, manifest, model_config):
        self.run, self.world, self.model = run, world, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.manifest, self.model_config = manifest, model_config

    def save_last(self, progress: Progress) -> dict:
        ranks = all_gather_objects(  # a collective: every rank calls save_last
            self.world,
            {
                "rng": torch.get_rng_state(),
                "step": progress.step,
                "weights": weights_checksum(self.model),
            },
        )
        if len({r["weights"] for r in ranks}) > 1 or len({r["step"] for r in ranks}) > 1:
            raise TrainingError(
                "the ranks' weights or step counts differ "
                f"({[(r['step'], r['weights']) for r in ranks]}): this is a bug in the "
                "trainer or a nondeterministic kernel; please report it"
            )
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **asdict(progress),
            "world_size": self.world.size,
            "torch_rng": [r["rng"] for r in ranks],
            "rank_steps": [r["step"] for r in ranks],
            "rank_weights": [r["weights"] for r in ranks],
            "fingerprints": self.manifest["fingerprints"],
            "model_config": self.model_config.to_dict(),
        }
        if self.world.main:
            self.run.save_checkpoint("last", state)
        return state

    def save_stopped(self, progress: Progress, steps: int, signal: str | None) -> dict:
        """Save `last.pt` after a stop signal ended the epoch at `progress.epoch_step` of
        `steps`, say how to continue, and return the run's summary."""
        self.save_last(progress)
        (logger.warning if self.world.main else logger.debug)(
            "stopped by %s at step %d (epoch %d, step %d of %d); %s holds it: "
            "continue with --resume",
            signal or "a signal to another rank",
            progress.step,
            progress.epoch + 1,
            progress.epoch_step,
            steps,
            self.run.checkpoint_path("last"),
        )
        return {"stopped at step": progress.step, "resume with": "--resume"}


def train_epoch(
    cfg: TrainConfig,
    run: RunDir,
    world: World,
    model: TwoTower,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterator,
    position: tuple[int, int, int],
    progress: Progress,
    stop: StopRequests,
    bar,
    device: torch.device,
) -> EpochStats:
    """The steps of one epoch (`position`: epoch, first step, steps per epoch); counts
    them in `progress.step`. Ends early, after the step in progress on every rank, when
    a stop signal reached any rank."""
    epoch, first_step, steps = position
    model.train()
    task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, completed=first_step)
    autocast = device.type == "cuda" and cfg.bf16  # bf16 needs no gradient scaler
    stats = EpochStats()
    for epoch_step in range(first_step, steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, samples = objective(batch)
        nonfinite, stop_requested = any_rank(
            world, device, not bool(torch.isfinite(loss)), stop.received is not None
        )
        if nonfinite:
            raise TrainingError(
                f"the loss became {loss.item()} at step {progress.step + 1} (on at least one "
                f"rank): training stopped; {run.checkpoint_path('last')} holds the "
                f"last good state. Lower --lr or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        progress.step += 1
        stats.waited += t1 - t0
        stats.computed += time.perf_counter() - t1
        stats.samples += samples * world.size
        stats.losses.append(loss.item())
        description = f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}"
        bar.update(task, advance=1, description=f"{description} {stats.rate():.0f} pairs/s")
        if world.main and (progress.step % 10 == 0 or progress.step == 1):
            run.log_metrics(
                {
                    "step": progress.step,
                    "epoch": epoch,
                    "loss": stats.losses[-1],
                    "lr": scheduler.get_last_lr()[0],
                    "temperature": 1.0 / model.temperature().item(),
                    "samples_per_s": stats.rate(),
                    "data_wait_fraction": stats.wait_fraction(),
                }
            )
        if stop_requested:
            stats.stopped_at = epoch_step + 1
            break
    return stats


class Validation:
    """Full ranking of the validation targets after each epoch, beside the baselines
    (ranked once: they do not change), split across ranks."""

    def __init__(self, cfg, data, model, spec, tabular, world, device):
        self.cfg, self.data, self.model, self.spec = cfg, data, model, spec
        self.tabular, self.world, self.device = tabular, world, device
        self.targets = validation_targets(data.split, data.n_items, cfg.val_limit, cfg.seed)
        if len(self.targets.rows) < len(data.split.val_rows):
            logger.info(
                "validation: %d of %d targets each epoch (a fixed random sample; --val-limit)",
                len(self.targets.rows),
                len(data.split.val_rows),
            )
        self.usable = embeddable_items(model, data.catalog)[: ItemIds(data.n_items).rows]
        self.baselines = baseline_reports(self.targets, cfg.exclude_seen)
        self.best_baseline = max(self.baselines, key=lambda b: self.baselines[b]["NDCG@10"])

    def run(self) -> dict[str, dict]:
        """The model's and the baselines' reports, with the catalogue embedded as
        `mirkit index` does and cold items read as `mirkit eval` and serving read them."""
        share = (self.world.rank, self.world.size)
        n_items, urls = self.data.n_items, self.data.urls
        table = embed_catalogue(
            self.model,
            n_items,
            urls,
            self.spec,
            self.device,
            64,
            self.tabular,
            share,
            workers=self.cfg.workers,  # decoding in the loader's processes
        )
        table = all_reduce_sum(self.world, table)
        table[torch.from_numpy(~self.usable).to(self.device)] = 0.0
        with self.model.reading_cold_items(table):
            return evaluate(
                self.model,
                self.targets,
                table,
                self.cfg.exclude_seen,
                self.world,
                self.baselines,
            )

    def summary(self, report: dict[str, dict], best: float) -> dict:
        baseline = self.baselines[self.best_baseline]
        return {
            "val NDCG@10 (best)": round(best, 4),
            "val Recall@10 (last epoch)": round(report["model"]["Recall@10"], 4),
            f"{self.best_baseline} NDCG@10 (best baseline)": round(baseline["NDCG@10"], 4),
            f"{self.best_baseline} Recall@10": round(baseline["Recall@10"], 4),
        }


def epoch_row(
    step: int,
    epoch: int,
    stats: EpochStats,
    report: dict[str, dict],
    best_baseline: str,
    started: float,
) -> dict:
    """The epoch's line of metrics.jsonl (and its log line): training speed, the
    validation metrics of the model and of each baseline."""
    row = {
        "step": step,
        "epoch": epoch,
        "train_loss": float(np.mean(stats.losses)) if stats.losses else float("nan"),
        "samples_per_s": stats.rate(),
        "data_wait_fraction": stats.wait_fraction(),
        "validation_fraction": stats.validation_share(),
        "seconds": round(time.perf_counter() - started, 1),  # time-to-quality curves
    }
    for who, metrics in report.items():
        prefix = "val" if who == "model" else f"val_{who}"
        row |= {f"{prefix}_{k}": v for k, v in metrics.items() if k != "n"}
    logger.info(
        "epoch %d: loss %.4f, val NDCG@10 %.4f (best baseline: %s %.4f), %.0f "
        "pairs/s, data wait %.0f%%, validation %.0f%% of the epoch",
        epoch + 1,
        row["train_loss"],
        report["model"]["NDCG@10"],
        best_baseline,
        report[best_baseline]["NDCG@10"],
        row["samples_per_s"],
        100 * row["data_wait_fraction"],
        100 * row["validation_fraction"],
    )
    return row


def init_from_run(model: TwoTower, run: Path, device: torch.device) -> int:
    """Copy every tensor of `run`'s best model into `model`, whose other tensors (parts
    that run lacks, such as content encoders) keep their initialisation. A tensor of the
    run that this model lacks or holds in another shape is an error, not a silent drop:
    a part left at its initialisation and then frozen would serve zeros. Returns how many
    tensors were copied."""
    weights = run / "model" / "model.pt"
    if not weights.exists():
        raise TrainingError(f"--init-from {run}: {weights} does not exist (train that run first)")
    state = load_weights(weights, device)
    own = model.state_dict()
    differ = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if differ:
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        raise TrainingError(
            f"--init-from {run}: {len(differ)} of its weights have no place of the same "
            f"shape in this model ({shown}): that run was trained with other model options. "
            f"Train with the model options in {run / 'config.json'}, or retrain that run"
        )
    model.load_state_dict(state, strict=False)
    return len(state)


def parameter_groups(model: TwoTower, cfg: TrainConfig) -> list[dict]:
    """The trained parameters for the optimiser: the history scorers at `scorer_lr_scale`
    x lr, the rest at lr."""
    prefixes = tuple(f"user_tower.{n}." for n in HISTORY_SCORERS)
    scorers, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (scorers if name.startswith(prefixes) else rest).append(p)
    groups = [
        {"params": rest, "lr": cfg.lr},
        {"params": scorers, "lr": cfg.lr * cfg.scorer_lr_scale},
    ]
    return [g for g in groups if g["params"]]


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
