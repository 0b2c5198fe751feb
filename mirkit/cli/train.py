"""`mirkit train`: options are generated from the trainer's TrainConfig, so the CLI, the
TOML config and the run's config.json always agree."""

from __future__ import annotations

import dataclasses

import click

from mirkit import log

HELP = {
    "shards": "The shards directory (mirkit shards build).",
    "run": "Run directory to write (config, metrics, checkpoints, curves).",
    "preset": "Model size: small (CPU, demo, tests) or full (the seed's encoders).",
    "modalities": "Comma-separated subset of audio,lyrics,cover,tabular,id (id alone = SASRec).",
    "text_model": "HF model directory or cached hub name (default: the preset's).",
    "split": "leave-one-out or global-time.",
    "path": "user-major (sequences; id-only models) or item-major (streamed item shards).",
    "loss": "full-softmax, sampled-softmax or in-batch (item-major: in-batch).",
    "logq": "Correct in-batch logits for how often each item is sampled.",
    "contexts": "K histories per item in an item-major batch.",
    "items_per_batch": "M distinct items per item-major batch.",
    "max_steps_per_epoch": "Cap the steps of an epoch (0: a full pass).",
    "shard_urls": "Comma-separated shard URLs (local paths or webdataset URLs such as "
    "pipe: commands) instead of the shards directory's own files.",
    "resume": "Continue from the run's checkpoints/last.pt.",
    "init_from": "Start from another run's best model: every weight whose name and shape "
    "match (e.g. the user tower and id table of an id-only run) is copied.",
    "freeze": "Comma-separated model parts whose weights stay as they start (names of "
    "parameters start with them), e.g. user_tower (which holds the shared id table) to "
    "train only the content part of a model warm-started with --init-from.",
    "exclude_seen": "Validation ranks without the user's earlier plays (published protocol).",
    "mask_seen": "Full softmax: items earlier in a training window are not negatives "
    "(for data without repeats, e.g. the published seqrec benchmarks).",
    "shift_windows": "User-major: cut long histories into windows at new places each epoch "
    "(a play is predicted after histories of different lengths). Better on data without "
    "repeats (LastFM); on the demo's plays it halved top-10 coverage.",
    "history_dropout": "Training: hide each item of a history behind a mask token with "
    "this probability. Better on data without repeats (0.3 on LastFM); on the demo's "
    "plays, where repeats matter, it cost accuracy and coverage.",
    "time_inputs": "The user tower reads the time gap before each play and before the "
    "request (log-scale buckets; logs without times use positions).",
    "repeat": "The user tower scores each history track as a candidate to play again "
    "(learned recency and frequency, mixed in by the user state) beside the catalogue "
    "score; it learns to stay out of the way on data without repeats.",
    "repeat_memory": "How many recent plays the repeat part reads, when more than "
    "max_len (the Transformer reads the last max_len of them); default: the preset's "
    "(max_len).",
    "freshness": "Weigh each item by how long ago anyone first played it (its age in the "
    "log at the request time), per age as the user state says: new releases for "
    "listeners who look for them.",
    "artists": "Items share learned rows with the other tracks of their artist and album "
    "(normalised names from the catalogue), so a new track starts near its artist's.",
    "early_stopping": "Stop after this many epochs without a better NDCG@10 (0: never).",
}


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
                help=HELP.get(f.name),
            )
        elif kind.startswith("tuple"):
            option = click.option(
                name, default=",".join(default or ()), show_default=True, help=HELP.get(f.name)
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
                help=HELP.get(f.name),
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

    SIGTERM or Ctrl-C saves checkpoints/last.pt at the current step and exits; --resume
    continues from there."""
    from mirkit_train.config import TrainConfig
    from mirkit_train.train import train as run_training

    for f in dataclasses.fields(TrainConfig):
        if _type_name(f).startswith("tuple"):
            options[f.name] = tuple(x for x in options[f.name].split(",") if x)
    summary = run_training(TrainConfig(**options), nproc_per_node, log.verbosity())
    log.summary(f"training run {summary['run']}", summary.items())
