"""`mirkit train`: options are generated from the trainer's TrainConfig, so the CLI, the
TOML config and the run's config.json always agree."""

from __future__ import annotations

import dataclasses

import click

from mirkit import log


def _choices() -> dict[str, click.Choice]:
    from mirkit.data.plays import SPLITS
    from mirkit.models.config import PRESETS
    from mirkit_train.config import LOSSES, PATHS

    return {
        "preset": click.Choice(sorted(PRESETS)),
        "split": click.Choice(SPLITS),
        "path": click.Choice(PATHS),
        "loss": click.Choice(LOSSES),
    }


def _type_name(f: dataclasses.Field) -> str:
    """A TrainConfig field's type as written ("int", "tuple[str, ...]", "str | None")."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _options(command):
    from mirkit_train.config import TrainConfig

    choices = _choices()
    for f in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default
        required = f.default is dataclasses.MISSING
        kind = _type_name(f)
        if kind == "bool":
            option = click.option(
                f"{name}/--no-{f.name.replace('_', '-')}",
                default=default,
                show_default=True,
                help=f.metadata.get("help"),
            )
        elif kind.startswith("tuple"):
            option = click.option(
                name,
                default=",".join(default or ()),
                show_default=True,
                help=f.metadata.get("help"),
            )
        else:
            types = {
                "int": int,
                "float": float,
                "str": str,
                "int | None": int,
                "str | None": str,
                "float | None": float,
            }
            option = click.option(
                name,
                type=choices.get(f.name, types.get(kind, str)),
                default=default,
                required=required,
                show_default=not required,
                help=f.metadata.get("help"),
            )
        command = option(command)
    return command


@click.command()
@_options
@click.option(
    "--nproc-per-node",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Start this many local ranks (DDP: NCCL on GPUs, gloo on CPUs). Under your own "
    "torchrun, leave it at 1.",
)
def train(nproc_per_node: int, **options) -> None:
    """Train a two-tower recommender on a shards directory.

    SIGTERM or Ctrl-C saves checkpoints/last.pt at the current step and exits with status
    75 (not finished); --resume continues from there."""
    from mirkit_train.config import TrainConfig
    from mirkit_train.train import STOPPED_EXIT_STATUS
    from mirkit_train.train import train as run_training

    for f in dataclasses.fields(TrainConfig):
        if _type_name(f).startswith("tuple"):
            options[f.name] = tuple(x for x in options[f.name].split(",") if x)
    summary = run_training(TrainConfig(**options), nproc_per_node, log.verbosity())
    log.summary(f"training run {summary['run']}", summary.items())
    if "stopped at step" in summary:  # not finished: callers (make, requeue scripts) must know
        raise SystemExit(STOPPED_EXIT_STATUS)
