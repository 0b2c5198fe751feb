"""Readers for the raw inputs a user has on disk, and track identity.

Every reader returns a polars DataFrame with mirkit's column names. Rows that cannot be
used are never dropped silently: they come back as `Problem`s that the build records in
`failures.parquet` and counts in the manifest.
"""

from __future__ import annotations

import csv
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mirkit.errors import MirkitError

PLAY_FORMATS = ("auto", "lastfm", "table", "seqrec")
TABLE_SUFFIXES = (".csv", ".parquet", ".tsv")


class InputError(MirkitError, ValueError):
    """An input that cannot be read at all; the message names the file and the fix."""


@dataclass(frozen=True)
class Problem:
    """One row of failures.parquet."""

    kind: str  # "play", "track", "item"
    key: str
    modality: str
    reason: str
    detail: str = ""
    item_id: int | None = None


@dataclass
class PlayColumns:
    """Column names of a CSV/Parquet play table."""

    user: str = "user_id"
    track: str = "track_id"
    time: str = "timestamp"
    artist: str = "artist_name"
    title: str = "track_name"


@dataclass
class Plays:
    """Plays before identity resolution: user, track id (maybe empty), artist, title,
    timestamp (int64 seconds, or the position for logs without times), source row."""

    frame: pl.DataFrame
    format: str
    timed: bool
    problems: list[Problem] = field(default_factory=list)
    rows_read: int = 0


def normalise(text: str) -> str:
    """Case-, width- and whitespace-insensitive form of a name (NFKC, casefold)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def track_key(track_id: str, artist: str, title: str) -> str:
    """A track's identity: its id when present, else the normalised 'artist - title'."""
    track_id = (track_id or "").strip()
    return track_id if track_id else f"{normalise(artist or '')} - {normalise(title or '')}"


def _require(path: Path, what: str, option: str) -> None:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist (check {option})")


def detect_play_format(path: Path) -> str:
    """lastfm: headerless 6-field TSV; seqrec: lines of integers; table: CSV/Parquet."""
    if path.suffix == ".parquet" or path.suffix == ".csv":
        return "table"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\n")
    if first.count("\t") == 5 and not first.startswith(("#", "user_id")):
        return "lastfm"
    if first and all(token.isdigit() for token in first.split()):
        return "seqrec"
    if path.suffix == ".tsv":
        return "table"
    raise InputError(
        f"cannot tell the format of plays file {path}: pass --plays-format lastfm|table|seqrec"
    )


def read_plays(path: Path, fmt: str = "auto", columns: PlayColumns | None = None) -> Plays:
    _require(path, "plays file", "--plays")
    fmt = detect_play_format(path) if fmt == "auto" else fmt
    if fmt == "lastfm":
        return _read_lastfm(path)
    if fmt == "seqrec":
        return _read_seqrec(path)
    if fmt == "table":
        return _read_play_table(path, columns or PlayColumns())
    raise InputError(f"unknown plays format {fmt!r}; choose one of {', '.join(PLAY_FORMATS)}")


def _read_lastfm(path: Path) -> Plays:
    """Last.fm-1K: user, ISO time, artist MBID, artist, track MBID, title; no header."""
    rows, problems = [], []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 6:
                problems.append(
                    Problem(
                        "play",
                        f"line {line_no}",
                        "plays",
                        "malformed line",
                        f"{len(fields)} tab-separated fields, expected 6",
                    )
                )
                continue
            rows.append((fields[0], fields[1], fields[3], fields[4], fields[5], line_no))
    columns = ["user_id", "time", "artist", "track_id", "title"]
    frame = pl.DataFrame(
        rows, schema={**dict.fromkeys(columns, pl.String), "row": pl.Int64}, orient="row"
    )  # typed even when empty (new releases appended with no plays yet)
    lines = len(rows) + len(problems)
    frame, bad = _parse_times(frame, path)
    return Plays(frame, "lastfm", timed=True, problems=problems + bad, rows_read=lines)


TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.fZ",  # Last.fm-1K: 2009-05-04T23:08:57Z
    "%Y-%m-%dT%H:%M:%S%.f%:z",  # with an offset: converted to UTC
    "%Y-%m-%dT%H:%M:%S%.f",  # no zone: read as UTC
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d",
)
"""The ISO-8601 forms a play time may take (each row is parsed by whichever fits), besides
epoch seconds."""
EARLIEST, LATEST_AHEAD = 0, 86_400
"""Plays before 1970 or more than a day after the build are refused as failure rows."""


def _parse_times(frame: pl.DataFrame, path: Path) -> tuple[pl.DataFrame, list[Problem]]:
    """`time` (epoch seconds or any of `TIME_FORMATS`, row by row) -> int64 epoch seconds
    `timestamp`. Rows that fit none, or lie before 1970 or in the future, become failure
    rows; when they are most of the file, the build stops (a format mirkit does not
    read should not leave a handful of plays)."""
    col = frame["time"]
    if col.dtype.is_numeric():
        seconds = col.cast(pl.Float64).floor().cast(pl.Int64)
    else:
        text = col.cast(pl.String).str.strip_chars()
        seconds = text.cast(pl.Float64, strict=False).floor().cast(pl.Int64)
        for fmt in TIME_FORMATS:
            parsed = text.str.to_datetime(fmt, time_zone="UTC", strict=False, exact=True)
            seconds = seconds.fill_null(parsed.dt.epoch("s"))
    frame = frame.with_columns(seconds.alias("timestamp"))
    latest = int(time.time()) + LATEST_AHEAD
    reason = (
        pl.when(pl.col("timestamp").is_null())
        .then(pl.lit("unparsable timestamp"))
        .when(pl.col("timestamp") < EARLIEST)
        .then(pl.lit("timestamp before 1970"))
        .when(pl.col("timestamp") > latest)
        .then(pl.lit("timestamp in the future"))
    )
    frame = frame.with_columns(reason.alias("reason"))
    bad = frame.filter(pl.col("reason").is_not_null())
    if len(bad) > len(frame) / 2:
        examples = ", ".join(repr(t) for t in bad["time"].cast(pl.String).head(3))
        raise InputError(
            f"{path}: {len(bad)} of {len(frame)} play times cannot be used (e.g. {examples}); "
            f"mirkit reads epoch seconds and ISO-8601 times such as 2009-05-04T23:08:57Z, "
            f"2009-05-04 23:08:57 or 2009-05-04: convert the time column"
        )
    problems = [
        Problem("play", f"row {r}", "plays", why, f"user {u}, time {t!r}")
        for u, r, why, t in zip(
            bad["user_id"], bad["row"], bad["reason"], bad["time"].cast(pl.String), strict=True
        )
    ]
    frame = frame.filter(pl.col("reason").is_null()).drop("time", "reason")
    return frame, problems


def _read_seqrec(path: Path) -> Plays:
    """`user item item ...` per line, in time order, no timestamps: position is the time."""
    rows, problems = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from err
    for line_no, line in enumerate(lines, start=1):
        tokens = line.split()
        if len(tokens) < 2:
            problems.append(
                Problem(
                    "play", f"line {line_no}", "plays", "malformed line", "a user with no items"
                )
            )
            continue
        user = tokens[0]
        rows += [(user, item, pos, line_no) for pos, item in enumerate(tokens[1:])]
    frame = pl.DataFrame(rows, schema=["user_id", "track_id", "timestamp", "row"], orient="row")
    frame = frame.with_columns(artist=pl.lit(""), title=pl.lit(""))
    return Plays(
        frame, "seqrec", timed=False, problems=problems, rows_read=len(rows) + len(problems)
    )


def read_table(path: Path, option: str) -> pl.DataFrame:
    """A CSV, TSV or Parquet table with a header, every column as read (CSV: strings)."""
    _require(path, "table", option)
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    separator = "\t" if path.suffix == ".tsv" else ","
    try:
        return pl.read_csv(
            path,
            separator=separator,
            infer_schema=False,
            quote_char='"',
        )
    except pl.exceptions.PolarsError as err:
        raise InputError(f"cannot read {path} ({option}): {err}") from err


def _columns_or_fail(frame: pl.DataFrame, wanted: dict[str, str], path: Path) -> None:
    missing = {opt: col for opt, col in wanted.items() if col not in frame.columns}
    if missing:
        names = ", ".join(f"'{c}' (set it with {o})" for o, c in missing.items())
        raise InputError(
            f"{path} has no column {names}; its columns are: {', '.join(frame.columns)}"
        )


def _read_play_table(path: Path, columns: PlayColumns) -> Plays:
    frame = read_table(path, "--plays")
    _columns_or_fail(
        frame,
        {
            "--play-user-col": columns.user,
            "--play-track-col": columns.track,
            "--play-time-col": columns.time,
        },
        path,
    )
    optional = {
        c: (pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(""))
        for c in (columns.artist, columns.title)
    }
    frame = frame.with_row_index("row", offset=1).select(
        pl.col(columns.user).cast(pl.String).alias("user_id"),
        pl.col(columns.time).alias("time"),
        optional[columns.artist].fill_null("").alias("artist"),
        pl.col(columns.track).cast(pl.String).fill_null("").alias("track_id"),
        optional[columns.title].fill_null("").alias("title"),
        pl.col("row").cast(pl.Int64),
    )
    frame, problems = _parse_times(frame, path)
    return Plays(
        frame, "table", timed=True, problems=problems, rows_read=len(frame) + len(problems)
    )


@dataclass
class TrackColumns:
    track_id: str = "track_id"
    title: str = "track_name"
    artist: str = "artist_name"
    album: str = "album_name"


def read_tracks(path: Path, columns: TrackColumns | None = None) -> pl.DataFrame:
    """The catalogue: track_key, track_id, title, artist, album, then any genre and numeric
    feature columns (numbers are kept as float32)."""
    columns = columns or TrackColumns()
    frame = read_table(path, "--tracks")
    _columns_or_fail(frame, {"--track-id-col": columns.track_id}, path)
    named = {
        columns.track_id: "track_id",
        columns.title: "title",
        columns.artist: "artist",
        columns.album: "album",
    }
    base = [
        pl.col(src).cast(pl.String).fill_null("").alias(dst)
        if src in frame.columns
        else pl.lit("").alias(dst)
        for src, dst in named.items()
    ]
    extra = []
    for name in frame.columns:
        if name in named:
            continue
        as_float = frame[name].cast(pl.Float32, strict=False)
        if as_float.null_count() == frame[name].null_count() and frame[name].dtype != pl.Boolean:
            extra.append(as_float.alias(name))
        else:
            extra.append(frame[name].cast(pl.String).fill_null("").alias(name))
    out = frame.select(base).with_columns(extra)
    keys = [
        track_key(i, a, t)
        for i, a, t in zip(out["track_id"], out["artist"], out["title"], strict=True)
    ]
    out = out.with_columns(pl.Series("track_key", keys))
    _refuse_unusable_rows(out, path, columns)
    out = out.unique(keep="first", maintain_order=True)  # exact copies are one track
    return out.select(["track_key", *[c for c in out.columns if c != "track_key"]])


def _refuse_unusable_rows(tracks: pl.DataFrame, path: Path, columns: TrackColumns) -> None:
    """A catalogue row that names no track, or two rows for one track that disagree, is
    the user's to fix: which copy is right is not the reader's guess."""
    blank = [pl.col(c).str.strip_chars() == "" for c in ("track_id", "artist", "title")]
    nameless = tracks.with_row_index("line", offset=2).filter(pl.all_horizontal(blank))
    if len(nameless):
        raise InputError(
            f"{path}: {len(nameless)} row(s) have no {columns.track_id} and no artist and "
            f"title (lines {', '.join(map(str, nameless['line'].head(5)))}): fill them in "
            f"or remove them"
        )
    clashing = tracks.unique().filter(pl.col("track_key").is_duplicated())
    if len(clashing):
        shown = ", ".join(clashing["track_id"].unique(maintain_order=True).head(5))
        raise InputError(
            f"{path}: {clashing['track_key'].n_unique()} track(s) have several rows that "
            f"disagree ({shown}): keep one row per track"
        )


def not_utf8(path: Path, err: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{path} is not UTF-8 text (byte {err.start}: {err.reason}): re-encode it, e.g. "
        f"`iconv -f latin1 -t utf-8 {path.name}`"
    )


def read_lyrics(path: Path) -> dict[str, str]:
    """track_id -> lyrics (raw text, any UTF-8, any length). Two rows for one track are
    refused: which one is right is the user's call, not the reader's."""
    _require(path, "lyrics file", "--lyrics")
    csv.field_size_limit(sys.maxsize)  # a whole album's text in one field is still lyrics
    lyrics: dict[str, str] = {}
    duplicates: set[str] = set()
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"track_id", "lyrics"} <= set(reader.fieldnames):
                raise InputError(
                    f"{path} must have the columns track_id and lyrics; it has: "
                    f"{', '.join(reader.fieldnames or [])}"
                )
            for row in reader:
                if row["track_id"] in lyrics:
                    duplicates.add(row["track_id"])
                lyrics[row["track_id"]] = row["lyrics"] or ""
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from err
    except csv.Error as err:
        raise InputError(f"{path} is not a readable CSV file: {err}") from err
    if duplicates:
        shown = ", ".join(sorted(duplicates)[:5])
        raise InputError(
            f"{path} has several rows for {len(duplicates)} track(s) ({shown}): keep one "
            f"row per track_id"
        )
    return lyrics


def read_profiles(path: Path) -> pl.DataFrame:
    """User profiles: Last.fm-1K's `#id gender age country registered` TSV or any table
    with a user_id column."""
    frame = read_table(path, "--profiles")
    frame = (
        frame.rename({frame.columns[0]: "user_id"}) if frame.columns[0] in ("#id", "id") else frame
    )
    _columns_or_fail(frame, {"--profiles": "user_id"}, path)
    return frame.with_columns(pl.all().cast(pl.String).fill_null(""))


def index_folder(
    folder: Path, suffixes: tuple[str, ...], option: str
) -> tuple[dict[str, Path], list[Path]]:
    """(files of a media folder by normalised stem (track id, or 'artist - title'), the
    links among them that lead outside the folder: never read, so a folder cannot make
    the build read any file the user can)."""
    if not folder.is_dir():
        raise InputError(f"{option} {folder} is not a directory")
    found: dict[str, Path] = {}
    outside: list[Path] = []
    root = folder.resolve()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        if not path.resolve().is_relative_to(root):
            outside.append(path)
            continue
        found.setdefault(normalise(path.stem), path)
    return found, outside
