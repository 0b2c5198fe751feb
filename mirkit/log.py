"""Console output shared by every command: logging verbosity, progress bars, summaries."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True)
_state = {"quiet": False, "verbosity": 0}


def configure(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only, no progress bars), 0 normal, >=1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    _state["quiet"] = verbosity < 0
    _state["verbosity"] = verbosity
    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.setLevel(level)  # stays quiet even when a run's log file lowers the root level
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)


def verbosity() -> int:
    """What `configure` was last given (so launched processes can repeat it)."""
    return _state["verbosity"]


def progress() -> Progress:
    """A progress bar that stays silent in quiet mode."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=_state["quiet"],
        transient=False,
    )


def summary(title: str, rows: Iterable[tuple[str, object]]) -> None:
    """Print a two-column summary table (to stderr, so stdout stays machine-readable)."""
    if _state["quiet"]:
        return
    table = Table(title=title, show_header=False, title_justify="left", min_width=len(title))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
