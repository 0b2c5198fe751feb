"""`mirkit recommend` and `mirkit similar`: what to play next, from a run and its index."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from mirkit import log
from mirkit.recommend import UnknownId

stdout = Console()


def _run_options(command):
    command = click.option(
        "--backend",
        type=click.Choice(["exact", "faiss"]),
        default="exact",
        show_default=True,
        help="Exact top-K, or FAISS (approximate; for very large catalogues).",
    )(command)
    command = click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)(
        command
    )
    command = click.option(
        "--shards",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Default: the shards the run was trained on.",
    )(command)
    return click.option(
        "--run",
        "run_path",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="A trained and indexed run (mirkit train, mirkit index).",
    )(command)


def _recommender(run_path: Path, shards: Path | None, backend: str):
    from mirkit.recommend import Recommender

    return Recommender(run_path, shards, backend)


def _table(title: str, rows: list[dict], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    return table


def _cell(value) -> str:
    if isinstance(value, bool):
        return "played" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@click.command()
@click.argument("user_id", required=False)
@_run_options
@click.option("--exclude-seen", is_flag=True, help="Never recommend what the user played.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@click.option(
    "--history",
    default=None,
    help="An ad-hoc listener: comma-separated track ids or 'Artist - Title' (oldest first) "
    "instead of USER_ID.",
)
@click.option("--explain", is_flag=True, help="Add each item's attention mass per modality.")
@click.option(
    "--users",
    "users_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Batch mode: a text file of user ids, one per line (needs --out).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Batch mode: Parquet file to write (user_id, rank, item_id, artist, title, score).",
)
@click.option("--list-users", is_flag=True, help="Print the known user ids and exit.")
@click.option(
    "--at",
    default=None,
    help="The time of the request (ISO 8601 such as 2009-05-01T18:00:00Z, or epoch "
    "seconds). Default: now for a live log, else the listener's last play + 30 minutes.",
)
def recommend(
    user_id: str | None,
    run_path: Path,
    shards: Path | None,
    k: int,
    backend: str,
    exclude_seen: bool,
    as_json: bool,
    history: str | None,
    explain: bool,
    users_file: Path | None,
    out: Path | None,
    list_users: bool,
    at: str | None,
) -> None:
    """Recommend the next tracks for USER_ID (or an ad-hoc --history, or --users FILE)."""
    started = time.perf_counter()
    rec = _recommender(run_path, shards, backend)
    loaded = time.perf_counter()
    if list_users:
        click.echo("\n".join(sorted(rec.user_rows)))
        return
    if users_file is not None:
        _batch(rec, users_file, out, k, exclude_seen, loaded, _request_time(at))
        return
    if (user_id is None) == (history is None):
        raise click.UsageError("give a USER_ID or --history (or --users FILE --out F)")
    if history is not None:
        items, unknown = [], []
        for text in history.split(","):
            try:
                items.append(rec.track(text))
            except UnknownId:
                unknown.append(text)
                items.append(rec.index.n_items + 1)  # out of vocabulary
        plays = np.asarray(items, dtype=np.int64)
        who, times, when = "the given history", None, None
        asked, why = None, "one step after the last play (the history has no times)"
    else:
        plays, unknown, who = rec.history(user_id), [], user_id
        times = [rec.played_at(user_id)]
        asked, why = _request_time(at), "given (--at)"
        if asked is None:
            asked, why = rec.default_request_time(times[0])
        when = [asked]
    recommendations = rec.recommend([plays], k, exclude_seen, times, when)[0]
    answered = time.perf_counter()
    rows = [r.as_dict() for r in recommendations]
    if explain:
        masses = rec.explain([r["item_id"] for r in rows])
        for row in rows:
            row["attention"] = masses.get(row["item_id"], {})
    recent = rec.describe(plays[-10:][::-1])
    if as_json:
        click.echo(
            json.dumps(
                {"user": who, "recent": recent, "recommendations": rows, "unknown": unknown},
                indent=1,
            )
        )
        return
    stdout.print(_table(f"Recent plays of {who} (newest first)", recent, ["artist", "title"]))
    columns = ["rank", "artist", "title", "score", "played"]
    if explain:
        for row in rows:
            row["attention"] = ", ".join(f"{m} {v:.2f}" for m, v in row["attention"].items())
        columns.append("attention")
    stdout.print(_table(f"Top {k} for {who}", rows, columns))
    log.summary(
        "recommend",
        [
            ("run", run_path),
            ("history length", len(plays)),
            ("request time", f"{_iso(asked)}: {why}" if asked is not None else why),
            ("unknown tracks (treated as new)", len(unknown)),
            ("already played in the top-K", sum(r["played"] for r in rows)),
            ("seconds to load the user tower and index", round(loaded - started, 2)),
            ("seconds to answer", round(answered - loaded, 3)),
        ],
    )


def _request_time(text: str | None) -> int | None:
    """Epoch seconds of an --at value (ISO 8601, or a number of seconds)."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: give ISO 8601 (2009-05-01T18:00:00Z) or epoch seconds",
            param_hint="--at",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _batch(rec, users_file: Path, out: Path | None, k, exclude_seen, loaded, at: int | None):
    import polars as pl

    if out is None:
        raise click.UsageError("--users needs --out FILE.parquet")
    users = [u.strip() for u in users_file.read_text().splitlines() if u.strip()]
    histories = [rec.history(u) for u in users]
    times = [rec.played_at(u) for u in users]
    when = [at if at is not None else rec.default_request_time(t)[0] for t in times]
    rows = []
    for user, recs in zip(
        users, rec.recommend(histories, k, exclude_seen, times, when), strict=True
    ):
        rows += [{"user_id": user, **r.as_dict()} for r in recs]
    pl.DataFrame(rows).write_parquet(out)
    log.summary(
        "recommend (batch)",
        [
            ("users", len(users)),
            ("rows", len(rows)),
            ("written", out),
            ("seconds to answer", round(time.perf_counter() - loaded, 2)),
        ],
    )


@click.command()
@click.argument("track", required=False)
@_run_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
@click.option("--list-tracks", is_flag=True, help="Print the known tracks and exit.")
def similar(
    track: str | None,
    run_path: Path,
    shards: Path | None,
    k: int,
    backend: str,
    as_json: bool,
    list_tracks: bool,
) -> None:
    """Tracks whose embeddings are nearest to TRACK (a track id or 'Artist - Title')."""
    rec = _recommender(run_path, shards, backend)
    if list_tracks:
        for row in rec.catalog.select("track_id", "artist", "title").iter_rows():
            click.echo("\t".join(str(v) for v in row))
        return
    if track is None:
        raise click.UsageError("give a TRACK (a track id or 'Artist - Title')")
    item = rec.track(track)
    rows = [r.as_dict() for r in rec.similar(item, k)]
    if as_json:
        click.echo(json.dumps({"track": rec.describe([item])[0], "similar": rows}, indent=1))
        return
    name = f"{rec.artists[item]} - {rec.titles[item]}"
    stdout.print(_table(f"Nearest to {name}", rows, ["rank", "artist", "title", "score"]))
