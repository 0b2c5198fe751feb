"""Reproduce the published full-ranking numbers of SASRec on the S3-Rec benchmarks with
mirkit's id-only model (the user tower, the loss and the evaluation on their own).

    .venv/bin/python tools/reproduce_seqrec.py ../shared/data/seqrec/Beauty.txt --out /tmp/seqrec \
        --seeds 0-2
    .venv/bin/python tools/reproduce_seqrec.py ../shared/data/seqrec/LastFM.txt --out /tmp/seqrec \
        --seeds 0-4

The defaults are one setting for every `user item item ...` file, chosen on Beauty's and
LastFM's validation targets (BENCHMARKS.md, "The id-only core"): full softmax with the
user's earlier items masked, shifted windows, lr 1e-3, dropout 0.2, batch 128, at least
1,500 steps and 30 epochs, no early stopping (the test reads the best validation epoch).
Writes a time-to-quality plot (validation NDCG@10 against seconds) beside the runs.

Protocol of the published table (../shared/data/README.md): leave-one-out (last item =
test, second last = validation), full ranking over all items, items of the user's own
history excluded, max sequence length 50, hidden size 64. Prints a Markdown row per seed,
and their mean (one test score on LastFM's 1,090 users moves by about 0.003 between seeds).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import click
import torch

from mirkit import log
from mirkit.data.plays import Split, SplitConfig, load_plays, make_split
from mirkit.evaluation.protocol import targets_of
from mirkit.models.two_tower import TwoTower
from mirkit.serving.index import embed_catalogue
from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit.shards.manifest import load_manifest
from mirkit_train.config import TrainConfig
from mirkit_train.evaluate import evaluate
from mirkit_train.run import RunDir
from mirkit_train.train import train
from mirkit_train.user_major import windows

MAX_LEN = 50  # the published protocol's
MIN_STEPS, MIN_EPOCHS = 1_500, 30
PUBLISHED = {  # HR@10, NDCG@10, HR@20, NDCG@20
    "Beauty": {
        "most popular": (0.0152, 0.0068, 0.0217, 0.0084),
        "SASRec": (0.0605, 0.0318, 0.0902, 0.0394),
        "S3-Rec": (0.0647, 0.0327, 0.0994, 0.0414),
    },
    "LastFM": {
        "most popular": (0.0440, 0.0203, 0.0615, 0.0248),
        "SASRec": (0.0688, 0.0390, 0.0972, 0.0463),
        "S3-Rec": (0.0743, 0.0427, 0.1229, 0.0550),
    },
}


@click.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--epochs",
    type=int,
    default=0,
    help="Passes over the data; 0: enough for 1,500 steps, and at least 30 (Beauty: 30, "
    "LastFM: 116; chosen on validation, BENCHMARKS.md).",
)
@click.option("--loss", default="full-softmax")
@click.option("--logq/--no-logq", default=True)
@click.option("--lr", type=float, default=1e-3)
@click.option("--batch-size", type=int, default=128)
@click.option("--dropout", type=float, default=0.2)
@click.option(
    "--mask-seen/--no-mask-seen",
    default=True,
    help="Earlier items of a window are not softmax negatives (the data has no repeats).",
)
@click.option(
    "--shift-windows/--fixed-windows",
    default=True,
    help="Cut long histories into training windows at new places each epoch.",
)
@click.option(
    "--history-dropout",
    type=float,
    default=0.0,
    help="Hide each training-history item behind the mask token with this probability.",
)
@click.option(
    "--seeds",
    default="0",
    help="Training seeds, e.g. 0 or 0-4 or 0,2: one row each, then their mean.",
)
@click.option(
    "--patience",
    type=int,
    default=0,
    help="Stop after this many epochs without a better val NDCG@10; 0 (default): train the "
    "whole plan. The test reads the best epoch either way, and on short epochs (LastFM: 13 "
    "steps) a patience in epochs stopped runs before the decayed learning rate's best "
    "epochs (BENCHMARKS.md).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue each seed's run from its last checkpoint (after an interruption) "
    "instead of training it from scratch.",
)
def main(
    data: Path,
    out: Path,
    epochs: int,
    loss: str,
    logq: bool,
    lr: float,
    batch_size: int,
    dropout: float,
    patience: int,
    mask_seen: bool,
    shift_windows: bool,
    history_dropout: float,
    seeds: str,
    resume: bool,
) -> None:
    log.configure(0)
    name = data.stem
    shards = out / f"shards-{name}"
    if not (shards / "manifest.json").exists():
        build_shards(BuildInputs(plays=data), BuildOptions(out=shards))
    tags, method = _describe(loss, logq, mask_seen, shift_windows, history_dropout)
    manifest = load_manifest(shards)
    split = make_split(load_plays(shards, manifest["fingerprints"]["interactions"]), SplitConfig())
    if epochs == 0:
        steps = max(1, len(windows(split, MAX_LEN)) // batch_size)
        epochs = max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps))
    click.echo("| data | model | HR@10 | NDCG@10 | HR@20 | NDCG@20 |")
    click.echo("|---|---|---:|---:|---:|---:|")
    rows, vals, runs = [], [], []
    for seed in _parse_seeds(seeds):
        seed_tag = f"-seed{seed}" if seed else ""
        run = out / f"run-{name}-{loss}{tags}-lr{lr:g}-do{dropout:g}{seed_tag}"
        if not resume:
            shutil.rmtree(run, ignore_errors=True)  # from scratch unless told to resume
        started = time.perf_counter()
        summary = train(
            TrainConfig(
                shards=str(shards),
                run=str(run),
                modalities=("id",),
                max_len=MAX_LEN,
                loss=loss,
                logq=logq,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                dropout=dropout,
                exclude_seen=True,
                mask_seen=mask_seen,
                shift_windows=shift_windows,
                history_dropout=history_dropout,
                seed=seed,
                path="user-major",
                early_stopping=patience,
                resume=resume and (run / "checkpoints" / "last.pt").exists(),
            )
        )
        _stop_if_interrupted(summary, seed, run)
        minutes = (time.perf_counter() - started) / 60
        runs.append(run)
        rows.append(_test(split, run))
        vals.append(summary["val NDCG@10 (best)"])
        click.echo(
            f"| {name} | {method}, seed {seed}, {summary['steps']} steps, {minutes:.1f} min, "
            f"best val NDCG@10 {vals[-1]:.4f}) | " + _cells(rows[-1])
        )
    _echo_mean_and_published(name, method, rows, vals)
    # a blank line first: Markdown would read a line right after the table as its last row
    click.echo(f"\ntime to quality: {plot_time_to_quality(runs, out / f'time-{name}.png')}")


def _describe(
    loss: str, logq: bool, mask_seen: bool, shift_windows: bool, history_dropout: float
) -> tuple[str, str]:
    """The run-name tags of the options in use and the words of the rows' model column."""
    options = [  # (in use, run-name tag, words in the row)
        (logq and loss == "in-batch", "-logq", "logQ"),
        (mask_seen, "-mask", "seen masked"),
        (shift_windows, "-shifted", "shifted windows"),
        (history_dropout > 0, f"-hd{history_dropout:g}", f"history dropout {history_dropout:g}"),
    ]
    tags = "".join(tag for used, tag, _ in options if used)
    words = ", ".join([loss] + [words for used, _, words in options if used])
    return tags, f"mirkit id-only ({words}"


def _stop_if_interrupted(summary: dict, seed: int, run: Path) -> None:
    if "stopped at step" in summary:
        raise click.ClickException(
            f"training of seed {seed} was interrupted at step {summary['stopped at step']}; "
            f"{run} holds its last checkpoint: run the same command with --resume to "
            f"continue it (seeds before it are retrained unless you pass --seeds {seed}-...)"
        )


def _echo_mean_and_published(name: str, method: str, rows: list, vals: list[float]) -> None:
    """The mean row of several seeds, then the published rows the table has for `name`."""
    if len(rows) > 1:
        mean = tuple(sum(column) / len(rows) for column in zip(*rows, strict=True))
        click.echo(
            f"| {name} | {method}, mean of {len(rows)} seeds, "
            f"val NDCG@10 {sum(vals) / len(vals):.4f}) | " + _cells(mean)
        )
    for baseline, values in PUBLISHED.get(name, {}).items():
        click.echo(f"| {name} | {baseline} (published) | " + _cells(values))
    if name not in PUBLISHED:
        click.echo(f"\n(no published numbers for {name}: the table knows {', '.join(PUBLISHED)})")


def plot_time_to_quality(runs: list[Path], path: Path) -> Path:
    """Validation NDCG@10 against training seconds (steps and validation), one line per
    run, from each run's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for run in runs:
        rows = [r for r in RunDir(run).metrics() if "val_NDCG@10" in r and "seconds" in r]
        axes.plot([r["seconds"] for r in rows], [r["val_NDCG@10"] for r in rows], label=run.name)
    axes.set_xlabel("seconds of training (steps and validation)")
    axes.set_ylabel("validation NDCG@10")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def _test(split: Split, run: Path) -> tuple[float, float, float, float]:
    """HR@10, NDCG@10, HR@20, NDCG@20 of the run's best model on the test targets (also
    written to run/test.json)."""
    model = TwoTower.load(run / "model").eval()
    n_items = model.n_items
    with torch.no_grad():
        table = embed_catalogue(model, n_items, [], _no_content(), torch.device("cpu"))
    report = evaluate(model, targets_of(split, split.test_rows, n_items), table, exclude_seen=True)
    (run / "test.json").write_text(json.dumps(report, indent=1))
    ours = report["model"]
    return ours["Recall@10"], ours["NDCG@10"], ours["Recall@20"], ours["NDCG@20"]


def _cells(values) -> str:
    return " | ".join(f"{v:.4f}" for v in values) + " |"


def _no_content():
    from mirkit.data.content import InputSpec

    return InputSpec()


if __name__ == "__main__":
    main()
