"""Where a user-major training step and an epoch spend their time (docs/design.md,
"Where an id-only step's time goes").

    .venv/bin/python tools/profile_train.py ../shared/data/seqrec/Beauty.txt --out /tmp/profile
    .venv/bin/python tools/profile_train.py shards/demo --out /tmp/profile --steps 30
    .venv/bin/python tools/profile_train.py ../shared/data/seqrec/Beauty.txt --out /tmp/profile \
        --mask-seen --shift-windows --dropout 0.2     # as tools/reproduce_seqrec.py trains

Builds the model and the batches exactly as `mirkit train` does (an id-only model, the
user-major path, the full softmax; other options as `mirkit train`'s), then times
`--steps` steps phase by phase (making the batch, the forward pass, the backward pass,
the optimiser), the top operators of the torch profiler (by input shape), and one
validation (embedding the catalogue, scoring the validation targets). Prints what an
epoch costs from these.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

import click
import torch

from mirkit import log
from mirkit.distributed import ONE_PROCESS
from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit_train.config import TrainConfig
from mirkit_train.train import Validation, batch_source, build_model, load_data, training_objective


@click.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--steps", type=int, default=20, help="Timed steps (after 3 warm-up steps).")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size)
@click.option("--dropout", type=float, default=None)
@click.option("--threads", type=int, default=0, help="torch threads (0: torch's default).")
@click.option("--mask-seen", is_flag=True, help="As tools/reproduce_seqrec.py trains.")
@click.option("--shift-windows", is_flag=True, help="As tools/reproduce_seqrec.py trains.")
def main(
    data: Path,
    out: Path | None,
    steps: int,
    batch_size: int,
    dropout: float | None,
    threads: int,
    mask_seen: bool,
    shift_windows: bool,
) -> None:
    log.configure(0)
    if threads:
        torch.set_num_threads(threads)
    shards = _shards_of(data, out or Path(tempfile.mkdtemp()))
    cfg = TrainConfig(
        shards=str(shards),
        run="-",
        modalities=("id",),
        path="user-major",
        batch_size=batch_size,
        dropout=dropout,
        mask_seen=mask_seen,
        shift_windows=shift_windows,
    )
    device = torch.device("cpu")
    data = load_data(cfg)  # the trainer's own setup, so the profile is of a training step
    model, _, spec, tabular = build_model(cfg, data, device)
    step_loss = training_objective(
        cfg, data, model, "user-major", "full-softmax", tabular, ONE_PROCESS, device
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = batch_source(cfg, data, model, "user-major", spec, tabular, ONE_PROCESS)
    epoch = itertools.chain.from_iterable(batches.epoch(e) for e in itertools.count())
    phases = {"batch": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}

    def one_step(timed: bool) -> None:
        t0 = time.perf_counter()
        batch = next(epoch)
        t1 = time.perf_counter()
        loss, _ = step_loss(batch)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        t4 = time.perf_counter()
        if timed:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[name] += seconds

    model.train()
    for _ in range(3):
        one_step(False)
    for _ in range(steps):
        one_step(True)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True
    ) as prof:
        for _ in range(min(5, steps)):
            one_step(False)
    per_step = sum(phases.values()) / steps
    click.echo(
        f"{shards.name}: {data.n_items} items, {len(batches.spans)} windows, batch {batch_size}, "
        f"{batches.steps_per_epoch()} steps per epoch, {torch.get_num_threads()} threads"
    )
    _echo_phases(phases, steps, per_step, prof)

    validation = Validation(cfg, data, model, spec, tabular, ONE_PROCESS, device)
    started = time.perf_counter()
    validation.run()
    validated = time.perf_counter() - started
    epoch_seconds = per_step * batches.steps_per_epoch()
    click.echo(
        f"validation: {validated:.1f} s for {len(validation.targets.rows)} targets (the "
        f"catalogue embedded, the model's ranks; the baselines are ranked once per run); an "
        f"epoch: {epoch_seconds:.0f} s of steps + {validated:.0f} s of validation"
    )


def _echo_phases(
    phases: dict[str, float], steps: int, per_step: float, prof: torch.profiler.profile
) -> None:
    """The step's phases (ms per step and share of `per_step` seconds) and the
    profiler's top operators."""
    click.echo("| phase | ms per step | share |\n|---|---:|---:|")
    for name, seconds in phases.items():
        click.echo(f"| {name} | {1000 * seconds / steps:.1f} | {seconds / steps / per_step:.0%} |")
    click.echo(f"| step | {1000 * per_step:.1f} | 100% |")
    click.echo(
        prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=12
        )
    )


def _shards_of(data: Path, out: Path) -> Path:
    """`data` itself when it holds shards, else shards built from a `user item item ...`
    file under `out` (once)."""
    if (data / "manifest.json").exists():
        return data
    shards = out / f"shards-{data.stem}"
    if not (shards / "manifest.json").exists():
        build_shards(BuildInputs(plays=data), BuildOptions(out=shards))
    return shards


if __name__ == "__main__":
    main()
