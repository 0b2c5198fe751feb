"""The id maps: tracks -> dense item ids (1..N, 0 = padding), users -> user_idx (0..U-1),
and plays resolved to (user_idx, item_id, timestamp).

Ids are assigned from the whole catalogue before any work is split, in track-key order,
and never change for a shards directory: an append gives new tracks and users new ids
after the existing ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from mirkit.shards.inputs import Plays, Problem, normalise, track_key


@dataclass
class IdMaps:
    catalog: pl.DataFrame  # item_id, track_key, track_id, title, artist, album, features...
    users: pl.DataFrame  # user_idx, user_id
    interactions: pl.DataFrame  # user_id, user_idx, item_id, timestamp
    problems: list[Problem]
    counts: dict[str, int]
    plays_format: str = ""


def _with_keys(plays: pl.DataFrame) -> pl.DataFrame:
    """Add `key` (track id, else normalised artist - title) and `name_key` (always the
    normalised artist - title), normalising each distinct name pair once."""
    pairs = plays.select("artist", "title").unique()
    pairs = pairs.with_columns(
        pl.Series(
            "name_key",
            [track_key("", a, t) for a, t in zip(pairs["artist"], pairs["title"], strict=True)],
            dtype=pl.String,
        )
    )
    plays = plays.join(pairs, on=["artist", "title"], how="left")
    return plays.with_columns(
        pl.when(pl.col("track_id").str.strip_chars() != "")
        .then(pl.col("track_id").str.strip_chars())
        .otherwise(pl.col("name_key"))
        .alias("key")
    )


def _catalog_from_plays(plays: pl.DataFrame) -> pl.DataFrame:
    first = plays.sort("row").unique("key", keep="first", maintain_order=True)
    return first.select(
        pl.col("key").alias("track_key"),
        pl.col("track_id").str.strip_chars(),
        "title",
        "artist",
        pl.lit("").alias("album"),
    )


def _resolve(plays: pl.DataFrame, catalog: pl.DataFrame) -> pl.DataFrame:
    """Map each play to a catalogue key: by id when the id is in the catalogue, else by
    normalised artist and title (play logs often lack ids the catalogue has)."""
    by_name = catalog.select(
        pl.Series(
            "name_key",
            [track_key("", a, t) for a, t in zip(catalog["artist"], catalog["title"], strict=True)],
            dtype=pl.String,
        ),
        pl.col("track_key").alias("named_key"),
    ).unique("name_key", keep="first")
    known = catalog.select(pl.col("track_key").alias("key"), pl.lit(True).alias("known"))
    plays = plays.join(known, on="key", how="left").join(by_name, on="name_key", how="left")
    return plays.with_columns(
        pl.when(pl.col("known"))
        .then(pl.col("key"))
        .otherwise(pl.col("named_key"))
        .alias("resolved")
    ).drop("known", "named_key")


def build_id_maps(
    plays: Plays, tracks: pl.DataFrame | None, previous: IdMaps | None = None
) -> IdMaps:
    """Catalogue, users and interactions from plays and an optional tracks table.

    With a tracks table, plays of tracks it does not list are reported, not kept; without
    one, the catalogue is every distinct track in the plays. `previous` (an append) keeps
    its ids and adds new tracks, users and plays after them."""
    problems = list(plays.problems)
    frame = _with_keys(plays.frame)
    new_tracks = tracks if tracks is not None else _catalog_from_plays(frame)
    old = previous.catalog if previous is not None else None
    catalog = _assign_item_ids(new_tracks, old)
    frame = _resolve(frame, catalog)

    unknown = frame.filter(pl.col("resolved").is_null())
    for key, n in unknown.group_by("key").len().sort("key").iter_rows():
        problems.append(
            Problem("play", key, "plays", "track not in the catalogue", f"{n} plays dropped")
        )
    frame = frame.filter(pl.col("resolved").is_not_null())
    frame = frame.join(
        catalog.select("track_key", "item_id"), left_on="resolved", right_on="track_key"
    )
    if previous is not None:  # an append: old plays first, then the new ones
        old_plays = previous.interactions.select(
            "user_id", "item_id", "timestamp", pl.lit(0, pl.Int64).alias("row")
        )
        frame = pl.concat([old_plays, frame.select("user_id", "item_id", "timestamp", "row")])
    duplicated = ~frame.select(
        pl.struct("user_id", "item_id", "timestamp").is_first_distinct()
    ).to_series()
    for user, item, ts in (
        frame.filter(duplicated).select("user_id", "item_id", "timestamp").iter_rows()
    ):
        problems.append(
            Problem(
                "play", user, "plays", "duplicate play row", f"item {item} at {ts}", item_id=item
            )
        )
    frame = frame.filter(~duplicated)

    users = _assign_user_idx(frame["user_id"].unique(), previous.users if previous else None)
    descending = plays.format == "lastfm"  # Last.fm-1K lists each user's plays newest first
    interactions = (
        frame.join(users, on="user_id")
        .sort(["user_idx", "timestamp", "row"], descending=[False, False, descending])
        .select("user_id", "user_idx", "item_id", "timestamp")
    )
    counts = {
        "rows read": plays.rows_read,
        "malformed rows": sum(
            p.reason in ("malformed line", "unparsable timestamp") for p in plays.problems
        ),
        "plays of unknown tracks": len(unknown),
        "duplicate rows": int(duplicated.sum()),
        "plays kept": len(interactions),
    }
    return IdMaps(catalog, users, interactions, problems, counts, plays.format)


def _assign_item_ids(tracks: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    start = 1 if previous is None else int(previous["item_id"].max()) + 1
    fresh = (
        tracks
        if previous is None
        else tracks.join(previous.select("track_key"), on="track_key", how="anti")
    )
    fresh = fresh.sort("track_key").with_row_index("item_id", offset=start)
    fresh = fresh.with_columns(pl.col("item_id").cast(pl.Int32))
    if previous is None:
        return fresh
    keep = [c for c in previous.columns if not c.startswith("has_")]
    return pl.concat([previous.select(keep), fresh], how="diagonal_relaxed")


def _assign_user_idx(user_ids: pl.Series, previous: pl.DataFrame | None) -> pl.DataFrame:
    start = 0 if previous is None else int(previous["user_idx"].max()) + 1
    fresh = pl.DataFrame({"user_id": user_ids.sort()})
    if previous is not None:
        fresh = fresh.join(previous.select("user_id"), on="user_id", how="anti")
    fresh = fresh.with_row_index("user_idx", offset=start).with_columns(
        pl.col("user_idx").cast(pl.Int32)
    )
    if previous is None:
        return fresh.select("user_idx", "user_id")
    return pl.concat([previous.select("user_idx", "user_id"), fresh.select("user_idx", "user_id")])


def media_key(track_key_value: str, track_id: str) -> str:
    """How a track's audio/cover files are looked up: by id, else by 'artist - title'."""
    return normalise(track_id) if track_id else track_key_value
