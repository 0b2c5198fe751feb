"""Where a run loses its repeat targets, and how well it guesses whether the next play is
a repeat at all.

    .venv/bin/python tools/repeat_diagnosis.py runs/demo-ids [--split val]

For each repeat target (a track the user played before), the model's rank among all
items, its rank among the user's own tracks only, and ACT-R's rank; and how many tracks
the user never played score above it. A model can order the history better than ACT-R
and still lose repeats to it, because ACT-R puts every played track above every other
one and gives up discoveries (BENCHMARKS.md, "Where the repeat targets are lost"). Then,
over all targets, the area under the ROC curve of "is the target a repeat" for the
model's softmax mass on the history and for the repeat share of the last 50 plays (0.5:
no better than chance).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from mirkit import log
from mirkit.evaluation.protocol import (
    baseline_ranks,
    load_run_index,
    load_targets,
    model_scores,
    per_target,
    slices,
)
from mirkit.serving.runs import TrainedRun

ACT_R = "recency-frequency (ACT-R)"


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties
    count half)."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks from 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def repeat_share(history: np.ndarray, window: int = 50) -> float:
    """The share of the last `window` plays that repeat an earlier play of the window."""
    recent = history[-window:]
    return 1.0 - len(np.unique(recent)) / len(recent) if len(recent) else 0.0


def diagnose(run: TrainedRun, which: str) -> dict[str, float]:
    """The measures of the module docstring for the run's `which` targets."""
    targets = load_targets(run, run.shards(), which)
    index = load_run_index(run)
    tower = run.load_user_tower(catalogue=index.embeddings)
    items = torch.from_numpy(index.embeddings[: run.ids.rows])
    scale = float(run.load_model().temperature().detach())  # the training softmax's
    repeat = slices(targets)["repeat"]
    if not repeat.any():
        raise click.ClickException(
            f"no {which} target of {run.path} repeats a track: nothing to diagnose"
        )
    act_r = baseline_ranks(targets, exclude_seen=False, top_k=0)[0][ACT_R][repeat]
    full, within, unplayed_above = [], [], []
    mass, share = np.zeros(len(repeat)), np.zeros(len(repeat))
    with log.progress() as bar:
        task = bar.add_task(f"diagnosing {which} targets", total=len(repeat))
        for positions, scores in model_scores(tower, targets.split, targets.rows, items):
            scores[:, 0] = float("-inf")  # padding, never a candidate
            for row, t in zip(scores, positions.tolist(), strict=True):
                history = targets.history(t)
                own = torch.from_numpy(np.unique(history[history < len(row)])).long()
                mass[t] = float(torch.softmax(row * scale, 0)[own].sum())
                share[t] = repeat_share(history)
                if not repeat[t]:
                    continue
                target = int(targets.items[t])
                at_or_above = row >= row[target]  # pessimistic ranks, as `mirkit eval` counts
                full.append(int(at_or_above.sum()))
                within.append(int(at_or_above[own].sum()))
                unplayed_above.append(full[-1] - within[-1])
            bar.update(task, advance=len(positions))
    ndcg = {
        name: float(per_target(np.array(r))["NDCG@10"].mean())
        for name, r in (("model", full), ("within", within), ("act_r", act_r))
    }
    gaps = np.array(unplayed_above)
    return {
        "targets": len(repeat),
        "repeat targets": int(repeat.sum()),
        "repeats NDCG@10, model": ndcg["model"],
        "repeats NDCG@10, the model's order within the history": ndcg["within"],
        "repeats NDCG@10, ACT-R": ndcg["act_r"],
        "repeat targets with an unplayed track above": float((gaps > 0).mean()),
        "unplayed tracks above a repeat target (mean)": float(gaps.mean()),
        "AUC of repeat-or-not, the model's mass on the history": roc_auc(mass, repeat),
        "AUC of repeat-or-not, the repeat share of the last 50 plays": roc_auc(share, repeat),
    }


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", "which", type=click.Choice(["val", "test"]), default="val")
def main(run: Path, which: str) -> None:
    log.configure(0)
    report = diagnose(TrainedRun.open(run), which)
    click.echo(f"| {run} ({which}) | |\n|---|---:|")
    for name, value in report.items():
        click.echo(
            f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"
        )


if __name__ == "__main__":
    main()
