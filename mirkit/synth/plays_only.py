"""A plays-only log of any size, generated without a Python loop per play: the probe of
what mirkit's play path costs at Last.fm-1K's scale (20 million plays over a million
tracks) and beyond, where the full synthetic world (audio for every track) cannot go.

The log is deterministic for a seed and has the shape of listening, not its detail:
sessions separated by long gaps, each starting from a track drawn by popularity and
wandering to nearby ids (neighbouring ids stand in for related tracks: an artist owns a
run of consecutive ids), with some plays going back to a track a few plays earlier. It is
a load for the pipeline, not a world whose ceiling anyone should quote.
"""

from __future__ import annotations

import numpy as np
import polars as pl

TRACKS_PER_ARTIST = 10


def plays_only_log(n_plays: int, n_items: int, n_users: int, seed: int = 0) -> pl.DataFrame:
    """The log as a table: user_id, track_id, artist_name, timestamp (epoch seconds), each
    user's plays in time order. Every user gets n_plays // n_users plays (the remainder
    goes to the first users)."""
    if min(n_plays, n_items, n_users) < 1 or n_plays < n_users:
        raise ValueError("need at least one item, one user and one play per user")
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), _plays_per_user(n_plays, n_users))
    session_start = _session_starts(users, rng)
    items = _wander(session_start, n_items, rng)
    items = _go_back(items, session_start, rng)
    times = _timestamps(users, session_start, rng)
    frame = pl.DataFrame({"user": users, "item": items, "timestamp": times})
    return frame.select(
        _name("u", pl.col("user"), 6).alias("user_id"),
        _name("t", pl.col("item"), 7).alias("track_id"),
        _name("a", pl.col("item") // TRACKS_PER_ARTIST, 6).alias("artist_name"),
        "timestamp",
    )


def _name(prefix: str, number: pl.Expr, digits: int) -> pl.Expr:
    return pl.format(prefix + "{}", number.cast(pl.Utf8).str.zfill(digits))


def _plays_per_user(n_plays: int, n_users: int) -> np.ndarray:
    counts = np.full(n_users, n_plays // n_users, dtype=np.int64)
    counts[: n_plays % n_users] += 1
    return counts


def _session_starts(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True where a session starts: each user's first play, then about one play in 12."""
    start = rng.random(len(users)) < 1 / 12
    start[0] = True
    start[1:] |= users[1:] != users[:-1]
    return start


def _wander(session_start: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """A popular track at each session start (rank n * u^3: a fifth of the sessions
    start in the top 1 %, and every rank is reachable), then small steps through the
    ids."""
    ranks = (n_items * rng.random(len(session_start)) ** 3).astype(np.int64)
    popular = rng.permutation(n_items)[ranks]  # rank r's track is a random id
    steps = np.where(session_start, 0, rng.integers(-3, 4, size=len(session_start)))
    walked = np.cumsum(steps)
    session = np.cumsum(session_start) - 1
    anchor = popular[session_start][session]
    origin = walked[session_start][session]
    return (anchor + walked - origin) % n_items


def _go_back(items: np.ndarray, session_start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """About one play in six replays the track of 1-5 plays earlier in its session."""
    back = rng.integers(1, 6, size=len(items))
    position = np.arange(len(items))
    first_of_session = np.maximum.accumulate(np.where(session_start, position, 0))
    source = position - back
    replay = (rng.random(len(items)) < 1 / 6) & (source >= first_of_session)
    out = items.copy()
    out[replay] = items[source[replay]]
    return out


def _timestamps(users: np.ndarray, session_start: np.ndarray, rng: np.random.Generator):
    """Three to five minutes between plays of a session, hours to days between sessions,
    every user's log starting on 2009-01-01."""
    gaps = np.where(
        session_start,
        rng.exponential(86_400.0, size=len(users)).astype(np.int64) + 3_600,
        rng.integers(180, 301, size=len(users)),
    )
    first = np.r_[True, users[1:] != users[:-1]]
    gaps[first] = 0
    elapsed = np.cumsum(gaps)
    user_origin = elapsed[first][np.cumsum(first) - 1]
    return 1_230_768_000 + elapsed - user_origin
