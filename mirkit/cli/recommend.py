"""`mirkit recommend` and `mirkit similar`: what to play next, from a run and its index."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from mirkit import log
from mirkit.serving.recommend import parse_request_time

stdout = Console()


def served_run_options(command):
    """--run, --shards and --backend: which trained, indexed run answers, and how."""
    command = click.option(
        "--backend",
        type=click.Choice(["exact", "faiss"]),
        default="exact",
        show_default=True,
        help="Exact top-K, or FAISS (approximate; for very large catalogues).",
    )(command)
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


def _run_options(command):
    command = click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)(
        command
    )
    return served_run_options(command)


def _recommender(run_path: Path, shards: Path | None, backend: str):
    from mirkit.serving.recommend import Recommender

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
        return "yes" if value else ""
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
        _batch(rec, users_file, out, k, exclude_seen, loaded, parse_request_time(at))
        return
    if (user_id is None) == (history is None):
        raise click.UsageError("give a USER_ID or --history (or --users FILE --out F)")
    if history is not None:
        tracks = history.split(",")
        answer = rec.answer_for_history(tracks, k, exclude_seen, explain)
    else:
        tracks = rec.history(user_id)
        answer = rec.answer_for_user(user_id, k, exclude_seen, parse_request_time(at), explain)
    answered = time.perf_counter()
    if as_json:
        click.echo(json.dumps(answer, indent=1))
        return
    _print_answer(answer, k, explain)
    when, why = answer["request_time"], answer["request_time_reason"]
    rows = answer["recommendations"]
    log.summary(
        "recommend",
        [
            ("run", run_path),
            ("history length", len(tracks)),
            ("request time", f"{when}: {why}" if when is not None else why),
            ("unknown tracks (treated as new)", len(answer["unknown"])),
            ("already played in the top-K", sum(r["played"] for r in rows)),
            ("cold tracks (no training plays) in the top-K", sum(r["cold"] for r in rows)),
            ("seconds to load the user tower and index", round(loaded - started, 2)),
            ("seconds to answer", round(answered - loaded, 3)),
        ],
    )


def _print_answer(answer: dict, k: int, explain: bool) -> None:
    who, recent, rows = answer["user"], answer["recent"], answer["recommendations"]
    timed = ["played_at"] if recent and "played_at" in recent[0] else []
    stdout.print(
        _table(f"Recent plays of {who} (newest first)", recent, ["artist", "title", *timed])
    )
    columns = ["rank", "artist", "title", "score", "played", "cold"]
    if explain:
        for row in rows:
            row["attention"] = ", ".join(f"{m} {v:.2f}" for m, v in row["attention"].items())
        columns.append("attention")
    stdout.print(_table(f"Top {k} for {who}", rows, columns))


def _batch(rec, users_file: Path, out: Path | None, k, exclude_seen, loaded, at: int | None):
    import polars as pl

    if out is None:
        raise click.UsageError("--users needs --out FILE.parquet")
    users = [u.strip() for u in users_file.read_text().splitlines() if u.strip()]
    answers = rec.answers_for_users(users, k, exclude_seen, [at] * len(users))
    rows = [{"user_id": a["user"], **r} for a in answers for r in a["recommendations"]]
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
    answer = rec.answer_similar(track, k)
    if as_json:
        click.echo(json.dumps(answer, indent=1))
        return
    name = f"{answer['track']['artist']} - {answer['track']['title']}"
    columns = ["rank", "artist", "title", "score", "cold"]
    stdout.print(_table(f"Nearest to {name}", answer["similar"], columns))
