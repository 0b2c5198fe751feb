"""`mirkit doctor`: check the environment and say how to fix what is missing."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mirkit.doctor import run_checks

MARK = {"ok": "[green]ok[/]", "missing": "[red]missing[/]", "note": "[yellow]note[/]"}


@click.command()
@click.option(
    "--shards",
    type=click.Path(path_type=Path),
    default=None,
    help="Also check this shards directory (and the free disk next to it).",
)
@click.option(
    "--run",
    "run_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also check that this run can be used with the shards.",
)
@click.option(
    "--preset",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="The model preset to check for (full needs the pretrained weights).",
)
def doctor(shards: Path | None, run_path: Path | None, preset: str) -> None:
    """Check ffmpeg, torch/CUDA/NCCL, pretrained weights, disk, shards and runs."""
    checks = run_checks(shards, run_path, preset)
    table = Table(title="mirkit doctor", title_justify="left", show_lines=True)
    for column in ("check", "status", "what was found", "how to fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c.name, MARK[c.status], c.detail, c.fix)
    Console().print(table)
    for c in checks:  # unfolded, for copying
        if c.fix:
            click.echo(f"fix for {c.name}: {c.fix}")
    missing = [c.name for c in checks if c.status == "missing"]
    if missing:
        raise click.ClickException(f"missing: {', '.join(missing)} (see 'how to fix')")
