"""The ceiling (oracle) and floor (popularity baselines) of a synthetic corpus.

Reads only the corpus's truth.json and its play log, never the pipeline's outputs:

    .venv/bin/python tools/synth_oracle.py data/demo [--json out.json]

Prints a Markdown table per protocol (leave-one-out, global time, its cold slice).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mirkit.synth.corpus import PLAYS_FILE
from mirkit.synth.listening import ListeningModel
from mirkit.synth.oracle import ceiling_report, read_play_log
from mirkit.synth.world import World

COLUMNS = ["Recall@10", "NDCG@10", "Recall@20", "Recall@50", "MRR", "n"]


def markdown(report: dict[str, dict]) -> str:
    lines = []
    for protocol, methods in report.items():
        lines += [
            f"**{protocol}**",
            "",
            "| method | " + " | ".join(COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS),
        ]
        for method, metrics in methods.items():
            cells = [f"{metrics[c]:.4f}" if c != "n" else str(metrics[c]) for c in COLUMNS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


@click.command()
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
def main(corpus: Path, json_out: Path | None) -> None:
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))
    world = World.from_truth(truth["world"])
    model = ListeningModel(**truth["listening_model"])
    report = ceiling_report(world, read_play_log(corpus / PLAYS_FILE, world), model)
    click.echo(
        f"corpus {corpus} (preset {truth['preset']}, seed {truth['seed']}, "
        f"version {truth['corpus_version']})\n"
    )
    click.echo(markdown(report))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
