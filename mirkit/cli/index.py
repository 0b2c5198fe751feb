"""`mirkit index`: embed the catalogue with a trained run's model into runs/NAME/index.h5."""

from __future__ import annotations

import os
from pathlib import Path

import click
from torch.distributed.elastic.multiprocessing.errors import record

from mirkit import log
from mirkit.distributed import join, launch, leave
from mirkit.serving.index import build_index
from mirkit.serving.runs import TrainedRun


@click.command()
@click.option(
    "--run",
    "run_path",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A trained run directory (mirkit train --run).",
)
@click.option(
    "--shards",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Shards to index (default: the ones the run was trained on; shards grown from "
    "them with --append are accepted).",
)
@click.option(
    "--update",
    is_flag=True,
    help="Keep the existing rows; embed only items added since (new releases).",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Embed on this many local ranks (one GPU each); rank 0 writes the index.",
)
def index(
    run_path: Path,
    shards: Path | None,
    update: bool,
    device: str,
    batch_size: int,
    nproc_per_node: int,
) -> None:
    """Embed every item of the shards with the run's best model (runs/NAME/index.h5)."""
    arguments = (str(run_path), str(shards) if shards else None, update, device, batch_size)
    if nproc_per_node > 1:
        summary = launch(_index_rank, (arguments, log.verbosity()), nproc_per_node)
    else:
        summary = _index(*arguments)
    log.summary("index", summary.items())


def _index(run_path: str, shards: str | None, update: bool, device: str, batch_size: int):
    world, chosen = join(device)
    try:
        return build_index(
            TrainedRun.open(Path(run_path)),
            Path(shards) if shards else None,
            chosen,
            batch_size,
            update,
            world,
        )
    finally:
        leave()


@record
def _index_rank(arguments: tuple[tuple, int]) -> dict:
    index_arguments, verbosity = arguments
    log.configure(verbosity if int(os.environ.get("RANK", 0)) == 0 else -1)
    return _index(*index_arguments)
