"""`mirkit eval` (a run against baselines) and `mirkit runs compare` (runs side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown

from mirkit import log

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
    from mirkit.evaluation import report as eval_report
    from mirkit.evaluation.protocol import evaluate_run

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
    metrics (and test metrics where `mirkit eval` has written them). Runs that differ
    only by their seed form a group: its mean and spread, and each group minus the first
    one seed by seed (a claim that A beats B needs that, not one run's bootstrap)."""
    records = [_run_record(path) for path in run_paths]
    keys = sorted({k for _, options, _ in records for k in options})
    differing = [k for k in keys if len({json.dumps(o.get(k)) for _, o, _ in records}) > 1]
    columns = differing + sorted({k for _, _, r in records for k in r})
    lines = ["| run | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for path, options, result in records:
        values = {**options, **result}
        cells = [_cell(values.get(c)) for c in columns]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    click.echo("\n".join(lines))
    groups: dict[str, dict[int, dict]] = {}
    for _, options, result in records:
        key = ", ".join(f"{k}={_cell(options.get(k))}" for k in differing if k != "train.seed")
        groups.setdefault(key or "all", {})[options["train.seed"]] = result
    if len(groups) == len(records):
        return
    metrics = sorted({k for _, _, r in records for k in r if k != "epochs"})
    click.echo("\n| group | seeds | " + " | ".join(f"{m} mean (sd)" for m in metrics) + " |")
    click.echo("|---|---|" + "---|" * len(metrics))
    first_key, first = next(iter(groups.items()))
    for key, by_seed in groups.items():
        cells = [_spread([r.get(m) for r in by_seed.values()]) for m in metrics]
        click.echo(f"| {key} | {len(by_seed)} | " + " | ".join(cells) + " |")
    click.echo(f"\n| group minus ({first_key}), same seeds | seeds | " + " | ".join(metrics) + " |")
    click.echo("|---|---|" + "---|" * len(metrics))
    for key, by_seed in list(groups.items())[1:]:
        seeds = sorted(set(by_seed) & set(first))
        cells = [
            _spread([_minus(by_seed[s].get(m), first[s].get(m)) for s in seeds], signed=True)
            for m in metrics
        ]
        click.echo(f"| {key} | {len(seeds)} | " + " | ".join(cells) + " |")


def _run_record(path: Path) -> tuple[Path, dict, dict]:
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
        test = json.loads(report.read_text())["metrics"][path.name]
        result |= {f"test {m}": test["all"][m] for m in ("NDCG@10", "Recall@10")}
        for part in ("repeat", "discovery"):
            if test.get(part, {}).get("NDCG@10") is not None:
                result[f"test NDCG@10 ({part})"] = test[part]["NDCG@10"]
    return path, options, result


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _spread(values: list, signed: bool = False) -> str:
    """mean (sd) of the values that exist; with `signed`, also how many are above 0."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
    text = f"{mean:+.4f} ({sd:.4f})" if signed else f"{mean:.4f} ({sd:.4f})"
    return text + (f", {sum(v > 0 for v in values)}/{len(values)} > 0" if signed else "")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "-" if value is None else str(value)
