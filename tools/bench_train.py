"""Training throughput on 1 and N local ranks (DDP; gloo on CPUs, NCCL on GPUs): the
same model and batches per rank, pairs per second over all ranks from the runs' metrics.

    .venv/bin/python -m tools.bench_train --shards shards/demo --ranks 1 --ranks 2

Each run trains `--steps` steps of one epoch into a temporary run directory.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import click

from mirkit import log
from mirkit_train.config import TrainConfig
from mirkit_train.train import train


@click.command()
@click.option("--shards", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--ranks", multiple=True, type=int, default=(1, 2), show_default=True)
@click.option("--steps", type=int, default=40, show_default=True)
@click.option("--preset", default="small", show_default=True)
@click.option("--modalities", default="audio,lyrics,cover,id", show_default=True)
@click.option("--contexts", type=int, default=32, show_default=True)
@click.option("--items-per-batch", type=int, default=32, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("--device", default="auto", show_default=True)
def main(
    shards: Path,
    ranks: tuple[int, ...],
    steps: int,
    preset: str,
    modalities: str,
    contexts: int,
    items_per_batch: int,
    workers: int,
    device: str,
) -> None:
    log.configure(-1)
    click.echo(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{preset} preset, {modalities}, K={contexts}, M={items_per_batch} per rank, "
        f"{workers} loader workers per rank, {steps} steps\n"
    )
    click.echo("| ranks | pairs/s (all ranks) | data wait | speed-up |")
    click.echo("|---:|---:|---:|---:|")
    baseline = None
    for n in ranks:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            train(
                TrainConfig(
                    shards=str(shards),
                    run=str(run),
                    preset=preset,
                    modalities=tuple(modalities.split(",")),
                    contexts=contexts,
                    items_per_batch=items_per_batch,
                    workers=workers,
                    epochs=1,
                    max_steps_per_epoch=steps,
                    device=device,
                    val_limit=100,
                ),
                nproc_per_node=n,
                verbosity=-1,
            )
            rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
            last = [r for r in rows if "loss" in r][-1]  # running averages up to that step
        rate, wait = last["samples_per_s"], last["data_wait_fraction"]
        baseline = baseline or rate
        click.echo(f"| {n} | {rate:.0f} | {100 * wait:.0f} % | {rate / baseline:.2f}x |")


if __name__ == "__main__":
    main()
