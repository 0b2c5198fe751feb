"""The end of `make demo`: where each artefact is, the headline metrics beside the
baselines and the corpus's oracle ceiling, and how long each stage took.

    .venv/bin/python tools/demo_summary.py --preset demo
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mirkit import log
from mirkit.evaluation.protocol import BASELINES


@click.command()
@click.option("--preset", default="demo", show_default=True)
def main(preset: str) -> None:
    log.configure(0)
    data, shards, run = Path("data", preset), Path("shards", preset), Path("runs", preset)
    stages = Path("runs", f"{preset}-stages.tsv")
    times: dict[str, str] = {}
    if stages.exists():
        for line in stages.read_text().splitlines():
            stage, seconds = line.split("\t")
            times[stage] = f"{seconds} s"  # the latest time of each stage wins
    report = json.loads((run / "eval-test.json").read_text())
    oracle = json.loads((data / "oracle.json").read_text())["leave-one-out"]["oracle"]
    metrics = report["metrics"]
    model = metrics[run.name]["all"]
    rows = [
        ("corpus", f"{data}/ (truth.json, oracle.json)"),
        ("shards", f"{shards}/ (manifest.json, items/*.tar)"),
        ("run", f"{run}/ (config.json, metrics.jsonl, curves.png, model/)"),
        ("index", f"{run}/index.h5"),
        ("evaluation", f"{run}/eval-test.md, eval-test.json, eval-test.png"),
        (
            "test NDCG@10 / Recall@10 (model)",
            f"{model['NDCG@10']:.4f} / {model['Recall@10']:.4f}",
        ),
    ]
    baselines = {f"{run.name}-ids": f"id-only ({run}-ids)"} | {name: name for name in BASELINES}
    for baseline, label in baselines.items():
        values = metrics[baseline]["all"]
        rows.append((f"  {label}", f"{values['NDCG@10']:.4f} / {values['Recall@10']:.4f}"))
    best = max(BASELINES, key=lambda name: metrics[name]["all"]["NDCG@10"])
    gap = report["vs_model"][best]["all"]["NDCG@10"]
    rows.append(
        (
            f"model minus the best baseline ({best})",
            f"NDCG@10 {gap['difference']:+.4f} [{gap['low']:+.4f}, {gap['high']:+.4f}]",
        )
    )
    rows.append(
        (
            "  oracle ceiling (the corpus's true law)",
            f"{oracle['NDCG@10']:.4f} / {oracle['Recall@10']:.4f}",
        )
    )
    for stage in ("corpus", "shards", "train-ids", "train", "index", "eval"):
        rows.append((f"time: {stage}", times.get(stage, "reused (built before)")))
    rows.append(("look and listen", f"make serve{'' if preset == 'demo' else f' PRESET={preset}'}"))
    log.summary(f"make demo ({preset})", rows)


if __name__ == "__main__":
    main()
