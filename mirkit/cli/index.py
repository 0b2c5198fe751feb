"""`mirkit index`: embed the catalogue with a trained run's model into runs/NAME/index.h5."""

from __future__ import annotations

from pathlib import Path

import click

from mirkit import log
from mirkit.cli.errors import reported
from mirkit.index import IndexMismatch, build_index
from mirkit.models.resnet import MissingWeights
from mirkit.runs import RunError, TrainedRun
from mirkit.shards.manifest import ShardsError


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
@reported(RunError, IndexMismatch, ShardsError, MissingWeights)
def index(run_path: Path, shards: Path | None, update: bool, device: str, batch_size: int) -> None:
    """Embed every item of the shards with the run's best model (runs/NAME/index.h5)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    summary = build_index(TrainedRun.open(run_path), shards, device, batch_size, update)
    log.summary("index", summary.items())
