"""An evaluation report as files: eval.json (everything), eval.md (the tables), eval.png
(NDCG@10 per slice, model against baselines)."""

from __future__ import annotations

import json
from pathlib import Path

MAIN = ("Recall@10", "NDCG@10", "Recall@20", "NDCG@20", "Recall@50", "NDCG@50", "MRR")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def markdown(report: dict) -> str:
    methods = list(report["metrics"])
    model = methods[0]
    lines = [
        f"# Evaluation of {report['run']}",
        "",
        f"{report['n_targets']} {report['targets']} targets of the {report['split']} split, "
        f"full ranking over {report['n_items']} items, pessimistic ties, "
        f"history {'excluded' if report['exclude_seen'] else 'not excluded (repeats count)'}. "
        "Baselines use training plays only (and each user's own earlier plays).",
        "",
        "## All targets",
        "",
        "| method | " + " | ".join(MAIN) + " |",
        "|---|" + "---:|" * len(MAIN),
    ]
    for m in methods:
        row = report["metrics"][m]["all"]
        lines.append(f"| {m} | " + " | ".join(_fmt(row[k]) for k in MAIN) + " |")
    slices = list(report["metrics"][model])
    lines += [
        "",
        "## Slices (NDCG@10 / Recall@10)",
        "",
        "| slice | targets | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for s in slices:
        values = [report["metrics"][m][s] for m in methods]
        cells = [f"{_fmt(v['NDCG@10'])} / {_fmt(v['Recall@10'])}" for v in values]
        lines.append(f"| {s} | {report['metrics'][model][s]['n']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## {model} minus each other method (paired bootstrap, 95 % interval)",
        "",
        f"Bootstrap: {report.get('bootstrap', 'resamples of targets')}.",
        "",
        "| versus | slice | NDCG@10 difference [95 % CI] | Recall@10 difference [95 % CI] |",
        "|---|---|---|---|",
    ]
    for other, by_slice in report["vs_model"].items():
        for s, values in by_slice.items():
            cells = [
                f"{v['difference']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]"
                for v in (values["NDCG@10"], values["Recall@10"])
            ]
            lines.append(f"| {other} | {s} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Beyond accuracy (top-10 lists)",
        "",
        "| method | catalogue coverage | mean popularity (x catalogue mean) | artist diversity |",
        "|---|---:|---:|---:|",
    ]
    for m, values in report["beyond_accuracy"].items():
        lines.append(f"| {m} | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")
    if "sampled" in report:
        sampled = report["sampled"]
        lines += ["", "## Sampled protocol", "", f"**{sampled['protocol']}.**", ""]
        lines += ["| method | Recall@10 | NDCG@10 |", "|---|---:|---:|"]
        for m, values in sampled.items():
            if m != "protocol":
                lines.append(f"| {m} | {values['Recall@10']:.4f} | {values['NDCG@10']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(report["metrics"])
    slices = [s for s in report["metrics"][methods[0]] if report["metrics"][methods[0]][s]["n"]]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(slices)), 3.6))
    for i, m in enumerate(methods):
        values = [report["metrics"][m][s]["NDCG@10"] or 0.0 for s in slices]
        ax.bar(np.arange(len(slices)) + i * width, values, width, label=m)
    ax.set_xticks(np.arange(len(slices)) + 0.4 - width / 2, slices, rotation=20, ha="right")
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"{report['run']}: {report['targets']} targets by slice")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(report: dict, directory: Path, stem: str = "eval") -> dict[str, Path]:
    paths = {kind: directory / f"{stem}.{kind}" for kind in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report, indent=1))
    paths["md"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths
