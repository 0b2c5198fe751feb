"""How synthetic users listen: sessions of plays drawn from an explicit next-track law.

The law is a mixture of mechanisms (repeat the last track, go back to a recent one,
stay on the album or artist, drift to a related genre, try a new release, or start again
from the user's own taste). `next_track_components` states it once; the generator samples
from it and the oracle tools rank by it, so the oracle is exact by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mirkit.synth.world import World

DAY_S = 86400.0


@dataclass(frozen=True)
class ListeningModel:
    repeat_last: float = 0.05
    repeat_recent: float = 0.12
    same_album: float = 0.08
    same_artist: float = 0.10
    genre_drift: float = 0.18
    new_release: float = 0.06
    session_recent: float = 0.2
    """At a session start: go back to a recent track with this probability..."""
    session_new_release: float = 0.25
    """...or try a new release with this one."""
    recent_window: int = 30
    new_window_days: float = 45.0
    popularity_exponent: float = 0.6
    foreign_language_weight: float = 0.3
    mean_session_plays: float = 10.0
    min_session_gap_s: float = 3600.0

    def to_dict(self) -> dict:
        return asdict(self)


class WorldIndex:
    """Arrays derived once from a world: tracks in release order, per-genre drift weights."""

    def __init__(self, world: World, model: ListeningModel):
        t = world.tracks
        self.world, self.model = world, model
        self.order = np.argsort(t.release_day, kind="stable")
        self.release_sorted = t.release_day[self.order]
        self.pop = t.popularity**model.popularity_exponent
        self.track_language = np.array([world.artist_language[a] for a in t.artist])
        drift = world.genre_sim[:, t.genre] * self.pop[None, :]
        self.drift_sorted = drift[:, self.order]
        self.album_tracks = _group(t.album)
        self.artist_tracks = _group(t.artist)

    def released(self, day: float) -> int:
        """How many tracks (a prefix of `order`) are out by `day`."""
        return int(np.searchsorted(self.release_sorted, day, side="right"))

    def user_weights_sorted(self, u: int) -> np.ndarray:
        """The user's taste over all tracks, in release order (not normalised)."""
        w, t = self.world, self.world.tracks
        users = w.users
        language_ok = (self.track_language == "en") | (self.track_language == users.language[u])
        lang = np.where(language_ok, 1.0, self.model.foreign_language_weight)
        weights = self.pop * users.taste[u, t.genre] * (0.5 + users.mood_pref[u, t.mood]) * lang
        return weights[self.order]


def _group(keys: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return {int(keys[g[0]]): g for g in np.split(order, bounds)}


@dataclass(frozen=True)
class PlayLog:
    """Clean plays as parallel arrays sorted by user, then time."""

    user: np.ndarray
    track: np.ndarray
    time_s: np.ndarray  # seconds since the world's start

    @classmethod
    def from_users(cls, plays: list[tuple[np.ndarray, np.ndarray]]) -> PlayLog:
        """From per-user (tracks, times) pairs, user index = position in the list."""
        return cls(
            user=np.concatenate([np.full(len(tracks), u) for u, (tracks, _) in enumerate(plays)]),
            track=np.concatenate([tracks for tracks, _ in plays]),
            time_s=np.concatenate([times for _, times in plays]),
        )


Component = tuple[float, np.ndarray, np.ndarray]
"""(probability of the mechanism, candidate track indices, their unnormalised weights)."""


def next_track_components(
    index: WorldIndex,
    u: int,
    user_sorted: np.ndarray,
    history: list[int],
    day: float,
    session_start: bool,
) -> list[Component]:
    """The next-track law for user `u` at `day` after `history` (track indices, oldest
    first). Mechanisms with no candidate are dropped and the rest renormalised."""
    m, t = index.model, index.world.tracks
    k = index.released(day)
    released = index.order[:k]
    new_mask = t.release_day[released] > day - m.new_window_days
    new_tracks = released[new_mask]
    new_weights = index.pop[new_tracks] * index.world.users.taste[u, t.genre[new_tracks]]
    new_share = m.session_new_release if session_start else m.new_release
    parts: list[Component] = [(new_share, new_tracks, new_weights)]
    if history:
        recent, counts = np.unique(history[-m.recent_window :], return_counts=True)
        last = history[-1]
        parts.append((m.session_recent if session_start else m.repeat_recent, recent, counts))
    if history and not session_start:
        album = index.album_tracks[int(t.album[last])]
        artist = index.artist_tracks[int(t.artist[last])]
        album = album[(album != last) & (t.release_day[album] <= day)]
        artist = artist[(artist != last) & (t.release_day[artist] <= day)]
        parts += [
            (m.repeat_last, np.array([last]), np.ones(1)),
            (m.same_album, album, index.pop[album]),
            (m.same_artist, artist, index.pop[artist]),
            (m.genre_drift, released, index.drift_sorted[t.genre[last], :k]),
        ]
    taste_share = 1.0 - sum(p for p, _, _ in parts)
    parts.append((taste_share, released, user_sorted[:k]))
    parts = [(p, i, w) for p, i, w in parts if len(i) and w.sum() > 0 and p > 0]
    total = sum(p for p, _, _ in parts)
    return [(p / total, i, w) for p, i, w in parts]


def next_track_distribution(
    index: WorldIndex, u: int, history: list[int], day: float, session_start: bool
) -> np.ndarray:
    """The exact probability of every track being user `u`'s next play."""
    probs = np.zeros(index.world.n_tracks)
    user_sorted = index.user_weights_sorted(u)
    for p, idx, w in next_track_components(index, u, user_sorted, history, day, session_start):
        np.add.at(probs, idx, p * w / w.sum())
    return probs


def _session_starts(
    rng: np.random.Generator,
    m: ListeningModel,
    first_day: float,
    last_day: float,
    lengths: np.ndarray,
    durations: float,
) -> np.ndarray:
    starts = np.sort(rng.uniform(first_day * DAY_S, last_day * DAY_S, len(lengths)))
    starts += rng.uniform(0, 3600, len(starts))  # no clock-aligned starts
    for i in range(1, len(starts)):
        earliest = starts[i - 1] + lengths[i - 1] * durations + m.min_session_gap_s
        starts[i] = max(starts[i], earliest + rng.exponential(1800))
    return starts


def simulate_user(
    index: WorldIndex, u: int, n_plays: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One user's plays: (track indices, timestamps in seconds from the world's start)."""
    m, w = index.model, index.world
    rng = np.random.default_rng([seed, 2, u])
    n_sessions = max(1, int(np.ceil(n_plays / m.mean_session_plays)))
    lengths = rng.multinomial(n_plays, rng.dirichlet(np.full(n_sessions, 2.0)))
    lengths = lengths[lengths > 0]
    starts = _session_starts(
        rng,
        m,
        w.users.first_day[u],
        w.users.last_day[u],
        lengths,
        float(w.tracks.duration_s.mean()),
    )
    user_sorted = index.user_weights_sorted(u)
    history: list[int] = []
    times: list[float] = []
    for start, length in zip(starts, lengths, strict=True):
        now = start
        for j in range(length):
            parts = next_track_components(index, u, user_sorted, history, now / DAY_S, j == 0)
            choice = rng.choice(len(parts), p=np.array([p for p, _, _ in parts]))
            _, idx, weights = parts[choice]
            cum = np.cumsum(weights)
            track = int(idx[min(np.searchsorted(cum, rng.random() * cum[-1]), len(idx) - 1)])
            history.append(track)
            times.append(now)
            now += float(w.tracks.duration_s[track]) + rng.uniform(0, 20)
    return np.array(history, dtype=np.int64), np.round(np.array(times))


def plays_per_user(world: World, n_plays: int, seed: int, minimum: int = 5) -> np.ndarray:
    """Split the play budget by user activity, with at least `minimum` plays each."""
    rng = np.random.default_rng([seed, 3])
    n_users = len(world.users.user_id)
    spare = max(0, n_plays - minimum * n_users)
    return minimum + rng.multinomial(spare, world.users.activity)
