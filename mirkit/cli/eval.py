"""`mirkit eval` (a run against baselines) and `mirkit runs compare` (runs side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown

from mirkit import log
from mirkit.cli.errors import reported
from mirkit.index import IndexMismatch
from mirkit.runs import RunError
from mirkit.shards.manifest import ShardsError

RUN = click.Path(file_okay=False, exists=True, path_type=Path)


@click.command("eval")
@click.option("--run", "run_path", type=RUN, required=True, help="A trained, indexed run.")
@click.option(
    "--split",
    "which",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="Which held-out targets of the run's split.",
)
@click.option(
    "--exclude-seen",
    is_flag=True,
    help="Exclude each user's earlier plays from the ranking (as the published "
    "seqrec tables do; off by default: repeats are real in music).",
)
@click.option(
    "--baseline",
    "baselines",
    type=RUN,
    multiple=True,
    help="Another run on the same shards and split to compare (repeatable).",
)
@click.option(
    "--sampled-negatives",
    type=click.IntRange(min=0),
    default=0,
    help="Also report the sampled protocol (target vs N random unplayed items); "
    "not comparable with full ranking.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals.",
)
@click.option(
    "--resample",
    type=click.Choice(["users", "targets"]),
    default="users",
    show_default=True,
    help="What the bootstrap resamples: users (their targets together; they are not "
    "independent) or single targets.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=0,
    help="Evaluate a fixed random subset of this many targets (0: all).",
)
@reported(RunError, IndexMismatch, ShardsError)
def evaluate(
    run_path: Path,
    which: str,
    exclude_seen: bool,
    baselines: tuple[Path, ...],
    sampled_negatives: int,
    bootstrap: int,
    resample: str,
    limit: int,
) -> None:
    """Full-ranking evaluation of a run beside baselines: eval.json, eval.md, eval.png."""
    from mirkit import eval_report
    from mirkit.evaluation import evaluate_run

    report = evaluate_run(
        run_path,
        which,
        exclude_seen,
        baselines,
        sampled_negatives,
        bootstrap,
        limit,
        cluster_by_user=resample == "users",
    )
    stem = f"eval-{which}" + ("-exclude-seen" if exclude_seen else "")
    paths = eval_report.write(report, run_path, stem)
    Console().print(Markdown(eval_report.markdown(report)))
    model = report["metrics"][run_path.name]["all"]
    log.summary(
        "eval",
        [
            ("targets", report["n_targets"]),
            ("NDCG@10", round(model["NDCG@10"], 4)),
            ("Recall@10", round(model["Recall@10"], 4)),
            ("most-popular NDCG@10", round(report["metrics"]["most-popular"]["all"]["NDCG@10"], 4)),
            *[(f"written ({kind})", path) for kind, path in paths.items()],
        ],
    )


@click.group()
def runs() -> None:
    """Look at several runs together."""


@runs.command()
@click.argument("run_paths", type=RUN, nargs=-1, required=True)
def compare(run_paths: tuple[Path, ...]) -> None:
    """One table: the options that differ between RUN_PATHS and their best validation
    metrics (and test metrics where `mirkit eval` has written them)."""
    records = []
    for path in run_paths:
        if not (path / "config.json").exists():
            raise click.ClickException(f"{path} has no config.json: not a mirkit run")
        record = json.loads((path / "config.json").read_text())
        options = {f"train.{k}": v for k, v in record["train"].items() if k not in ("run",)}
        options |= {f"model.{k}": v for k, v in record["model"].items()}
        metrics = [
            json.loads(line) for line in (path / "metrics.jsonl").open() if "val_NDCG@10" in line
        ]
        best = max(metrics, key=lambda r: r["val_NDCG@10"], default={})
        result = {
            "best val NDCG@10": best.get("val_NDCG@10"),
            "best val Recall@10": best.get("val_Recall@10"),
            "epochs": len(metrics),
        }
        report = path / "eval-test.json"
        if report.exists():
            test = json.loads(report.read_text())["metrics"][path.name]["all"]
            result |= {"test NDCG@10": test["NDCG@10"], "test Recall@10": test["Recall@10"]}
        records.append((path, options, result))
    keys = sorted({k for _, options, _ in records for k in options})
    differing = [k for k in keys if len({json.dumps(o.get(k)) for _, o, _ in records}) > 1]
    columns = differing + sorted({k for _, _, r in records for k in r})
    lines = ["| run | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for path, options, result in records:
        values = {**options, **result}
        cells = [_cell(values.get(c)) for c in columns]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    click.echo("\n".join(lines))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)
