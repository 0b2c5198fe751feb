"""Recommendations from a trained run and its index: for a known listener, for an ad-hoc
history, and item-to-item neighbours.

Only the user tower and the index are loaded (no content encoders): explanations (each
item's attention per modality) were stored in the index when it was built. The `answer_*`
methods build the JSON answers that `mirkit recommend --json`, `mirkit similar --json`
and `mirkit serve`'s API all return, so the three cannot disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mirkit.data.plays import first_play_times, load_plays
from mirkit.errors import MirkitError
from mirkit.serving.index import IndexMismatch, load_run_index
from mirkit.serving.runs import TrainedRun

LIVE_LOG = 24 * 3600
"""A log whose newest play is younger than this (seconds) is live: requests are now."""
SESSION_GAP = 30 * 60
"""A request to an ended log comes this long after the listener's last play: a new
session (30 minutes, the usual inactivity threshold of session studies)."""


RECENT_PLAYS = 10
"""How many of the listener's newest plays an answer shows."""


class UnknownId(MirkitError, LookupError):
    """A user or track id the shards do not know; the message says how to list them."""


class BadRequest(MirkitError, ValueError):
    """A request value out of range or unreadable (a time, k, a history too long)."""


def parse_request_time(text: str | None) -> int | None:
    """Epoch seconds of a request time given as ISO 8601 or as a number of seconds."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{text!r} is not a time: give ISO 8601 (2009-05-01T18:00:00Z) or epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def iso_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Recommendation:
    rank: int
    item_id: int
    artist: str
    title: str
    score: float
    played: bool  # in the listener's history
    cold: bool  # no training plays: embedded from content, artist or album alone

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Recommender:
    def __init__(self, run_path: Path, shards: Path | None = None, backend: str = "exact"):
        self.run = TrainedRun.open(run_path)
        self.index = load_run_index(self.run)
        self.shards = self.run.shards(shards)
        self.manifest, self.catalog = self.run.check_shards(self.shards)
        if int(self.catalog["item_id"].max()) > self.index.n_items:
            raise IndexMismatch(
                f"{self.shards} has items added after the index was built: run "
                f"`mirkit index --run {run_path} --update`"
            )
        self.backend = backend
        self.user_tower = self.run.load_user_tower(catalogue=self.index.embeddings)
        self.items = torch.from_numpy(self.index.embeddings)
        self.max_len = self.user_tower.history_len  # the plays a history holds
        self.plays = load_plays(self.shards, self.manifest["fingerprints"]["interactions"])
        if self.user_tower.freshness is not None:  # what the shards know now
            first = first_play_times(self.plays, self.user_tower.n_items)
            self.user_tower.freshness.set_first_played(torch.from_numpy(first))
        users = pl.read_parquet(self.shards / "users.parquet")
        self.user_rows = dict(zip(users["user_id"], users["user_idx"], strict=True))
        self.artists = self._by_id("artist")
        self.titles = self._by_id("title")
        self.embeddable = ~(self.index.embeddings == 0).all(axis=1)
        self.cold = self.embeddable & ~self.index.warm
        self.play_counts = np.bincount(self.plays.items, minlength=self.index.ids.rows)
        keys = {
            str(k).lower(): int(i)
            for k, i in zip(self.catalog["track_id"], self.catalog["item_id"], strict=True)
            if k
        }
        keys |= {
            f"{a} - {t}".lower(): int(i)
            for a, t, i in zip(
                self.catalog["artist"], self.catalog["title"], self.catalog["item_id"], strict=True
            )
        }
        self.track_ids = keys

    def _by_id(self, column: str) -> np.ndarray:
        out = np.full(self.index.ids.rows, "", dtype=object)
        out[self.catalog["item_id"].to_numpy()] = self.catalog[column].fill_null("").to_list()
        return out

    # --- who ---
    def history(self, user_id: str) -> np.ndarray:
        """All the user's plays in time order (item ids)."""
        return np.asarray(self.plays.items[self._plays_of(user_id)])

    def _plays_of(self, user_id: str) -> slice:
        if user_id not in self.user_rows:
            raise UnknownId(
                f"unknown user {user_id!r}: `mirkit recommend --list-users --run "
                f"{self.run.path}` lists the users of {self.shards}"
            )
        u = int(self.user_rows[user_id])
        return slice(int(self.plays.indptr[u]), int(self.plays.indptr[u + 1]))

    def track(self, text: str) -> int:
        """An item id from a track id (MusicBrainz), "Artist - Title" or "#item_id"."""
        text = text.strip()
        if text.startswith("#") and text[1:].isdigit() and 0 < int(text[1:]) < len(self.artists):
            return int(text[1:])
        found = self.track_ids.get(text.lower())
        if found is None:
            raise UnknownId(
                f"unknown track {text!r}: give a track id, 'Artist - Title' or '#item_id' "
                f"from {self.shards}/catalog.parquet (`mirkit similar --list-tracks --run "
                f"{self.run.path}` lists them)"
            )
        return found

    def describe(self, item_ids: np.ndarray, times: np.ndarray | None = None) -> list[dict]:
        known = len(self.artists)
        rows = [
            {
                "item_id": int(i),
                "artist": self.artists[i] if i < known else "(unknown track)",
                "title": self.titles[i] if i < known else "",
            }
            for i in item_ids
        ]
        for row, played in zip(rows, times if times is not None else [], strict=False):
            row["played_at"] = iso_time(int(played))
        return rows

    # --- what ---
    def played_at(self, user_id: str) -> np.ndarray:
        """The times of the user's plays (`history`'s order)."""
        return np.asarray(self.plays.times[self._plays_of(user_id)])

    def default_request_time(self, times: np.ndarray) -> tuple[int, str]:
        """(time, why) of a request for a listener whose plays are at `times`: now while
        the log is live (its newest play under a day old), else one session gap after
        the listener's last play (the log has ended; 'now' would be years later)."""
        now = int(time.time())
        newest = int(np.asarray(self.plays.times).max()) if len(self.plays.times) else now
        if now - newest < LIVE_LOG:
            return now, "now (the log is live)"
        last = int(times[-1]) if len(times) else newest
        return last + SESSION_GAP, "the last play + 30 minutes (the log has ended)"

    @torch.no_grad()
    def recommend(
        self,
        histories: list[np.ndarray],
        k: int = 10,
        exclude_seen: bool = False,
        times: list[np.ndarray] | None = None,
        at: list[int] | None = None,
        among: np.ndarray | None = None,
    ) -> list[list[Recommendation]]:
        """The top-k of each history (item ids, oldest first) with its play `times`, for
        a request at `at` (both default to positions: one step after the last play), by
        `SASRec.score`: the scores `mirkit eval` ranks by. `among` [n_items + 1] bool:
        only these items (exact scoring whatever the backend)."""
        history, played = self._padded(histories, times)
        request = torch.tensor(at, dtype=torch.int64) if at is not None else None
        exclude = [np.unique(h) for h in histories] if exclude_seen else None
        if self.backend == "exact" or among is not None:
            scores = self.user_tower.score(history, self.items, played, request)
            if among is not None:
                scores[:, torch.from_numpy(~among)] = float("-inf")
            top_scores, ids = self._top(scores, k, exclude)
        else:
            top_scores, ids = self._faiss_top(history, played, request, k, exclude)
        return [
            self._rows(s, i, set(h.tolist()))
            for s, i, h in zip(top_scores, ids, histories, strict=True)
        ]

    def _padded(
        self, histories: list[np.ndarray], times: list[np.ndarray] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = np.zeros((2, len(histories), self.max_len), dtype=np.int64)
        for r, h in enumerate(histories):
            recent = np.asarray(h[-self.max_len :], dtype=np.int64)
            if len(recent):
                batch[0, r, self.max_len - len(recent) :] = recent
                if times is not None:
                    batch[1, r, self.max_len - len(recent) :] = times[r][-self.max_len :]
        played = torch.from_numpy(batch[1]) if times is not None else None
        return torch.from_numpy(batch[0]), played

    def _top(
        self, scores: torch.Tensor, k: int, exclude: list[np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores[:, 0] = float("-inf")
        if exclude is not None:
            for r, ids in enumerate(exclude):
                scores[r, torch.as_tensor(ids[ids < scores.shape[1]])] = float("-inf")
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        return top.values.numpy(), top.indices.numpy()

    def _faiss_top(self, history, played, request, k, exclude) -> tuple[np.ndarray, np.ndarray]:
        """Approximate catalogue candidates, then the history's tracks re-scored: the
        top-k of (k + history length) candidates and the history is the exact top-k of
        the candidates' scores with the repeat bonus."""
        states = self.user_tower(history, None, played, request)
        extra = int((history > 0).sum(dim=1).max()) if len(history) else 0
        _, ids = self.index.search(states.numpy(), k + extra, exclude, backend="faiss")
        known = torch.where(history < len(self.items), history, 0)
        candidates = torch.cat([torch.from_numpy(ids), known], dim=1)
        scores = self.user_tower.score(history, self.items, played, request, candidates)
        scores[candidates == 0] = float("-inf")
        for r, row in enumerate(candidates.numpy()):  # a history track also found by faiss
            repeated = np.ones(len(row), dtype=bool)
            repeated[np.unique(row, return_index=True)[1]] = False
            scores[r, torch.from_numpy(repeated)] = float("-inf")
        if exclude is not None:
            for r, seen in enumerate(exclude):
                scores[r, torch.from_numpy(np.isin(candidates[r].numpy(), seen))] = float("-inf")
        best = scores.topk(min(k, scores.shape[1]), dim=1)
        return best.values.numpy(), candidates.gather(1, best.indices).numpy()

    def similar(self, item_id: int, k: int = 10) -> list[Recommendation]:
        vector = self.index.embeddings[item_id][None]
        if not vector.any():
            raise UnknownId(f"track {item_id} has no embedding (nothing the model can read)")
        scores, ids = self.index.search(vector, k, [np.array([item_id])], backend=self.backend)
        return self._rows(scores[0], ids[0], set())

    def _rows(self, scores: np.ndarray, ids: np.ndarray, seen: set[int]) -> list[Recommendation]:
        return [
            Recommendation(
                r + 1,
                int(i),
                self.artists[i],
                self.titles[i],
                float(s),
                int(i) in seen,
                bool(self.cold[i]),
            )
            for r, (s, i) in enumerate(zip(scores, ids, strict=True))
            if np.isfinite(s)
        ]

    def explain(self, item_ids: list[int]) -> dict[int, dict[str, float]]:
        """Each item's attention mass per modality (stored in the index at build time:
        the share of its id, audio, lyrics, cover... in its embedding)."""
        kinds = self.index.meta["attention_kinds"]
        rows = self.index.attention[np.asarray(item_ids, dtype=np.int64)]
        masses = np.round(rows.astype(np.float64), 3)
        return {
            int(i): dict(zip(kinds, row.tolist(), strict=True))
            for i, row in zip(item_ids, masses, strict=True)
        }

    # --- answers: what `recommend --json`, `similar --json` and the HTTP API return ---
    def answer_for_user(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = False,
        at: int | None = None,
        explain: bool = False,
        among: np.ndarray | None = None,
    ) -> dict:
        """A known listener's recent plays and top-k for a request at `at` (default:
        `default_request_time`), with why that time; `among`: only these items."""
        return self.answers_for_users([user_id], k, exclude_seen, [at], explain, among)[0]

    def answers_for_users(
        self,
        user_ids: list[str],
        k: int = 10,
        exclude_seen: bool = False,
        at: list[int | None] | None = None,
        explain: bool = False,
        among: np.ndarray | None = None,
    ) -> list[dict]:
        """`answer_for_user` of several listeners, scored as one batch (what a server
        does with concurrent requests)."""
        _check_k(k)
        plays = [self.history(u) for u in user_ids]
        times = [self.played_at(u) for u in user_ids]
        asked = at if at is not None else [None] * len(user_ids)
        when = [
            (t, "given") if t is not None else self.default_request_time(played)
            for t, played in zip(asked, times, strict=True)
        ]
        found = self.recommend(plays, k, exclude_seen, times, [t for t, _ in when], among)
        answers = []
        for user, items, played, rows, (t, why) in zip(
            user_ids, plays, times, found, when, strict=True
        ):
            recent = self.describe(items[::-1][:RECENT_PLAYS], played[::-1][:RECENT_PLAYS])
            answers.append(
                self._answer(user, recent, rows, [], explain)
                | {"request_time": iso_time(t), "request_time_reason": why}
            )
        return answers

    def answer_for_history(
        self, tracks: list[str], k: int = 10, exclude_seen: bool = False, explain: bool = False
    ) -> dict:
        """An ad-hoc listener: `tracks` (oldest first; track ids, 'Artist - Title' or
        '#item_id') without times. Unknown tracks are read as new ones and listed."""
        _check_k(k)
        if len(tracks) > MAX_HISTORY:
            raise BadRequest(f"a history of {len(tracks)} tracks: give at most {MAX_HISTORY}")
        items, unknown = [], []
        for text in tracks:
            try:
                items.append(self.track(text))
            except UnknownId:
                unknown.append(text)
                items.append(self.index.ids.oov)  # past every item: the model reads OOV
        plays = np.asarray(items, dtype=np.int64)
        found = self.recommend([plays], k, exclude_seen)[0]
        recent = self.describe(plays[::-1][:RECENT_PLAYS])
        return self._answer("the given history", recent, found, unknown, explain) | {
            "request_time": None,
            "request_time_reason": "one step after the last play (the history has no times)",
        }

    def _answer(self, who, recent, found, unknown, explain: bool) -> dict:
        rows = [r.as_dict() for r in found]
        if explain:
            masses = self.explain([r["item_id"] for r in rows])
            for row in rows:
                row["attention"] = masses[row["item_id"]]
        return {"user": who, "recent": recent, "recommendations": rows, "unknown": unknown}

    def answer_similar(self, track: str, k: int = 10) -> dict:
        _check_k(k)
        item = self.track(track)
        rows = [r.as_dict() for r in self.similar(item, k)]
        return {"track": self.describe([item])[0], "similar": rows}

    def track_detail(self, item_id: int) -> dict:
        """What the catalogue and the index know of one item."""
        row = self.catalog.filter(pl.col("item_id") == item_id).row(0, named=True)
        modalities = {m: bool(row.get(f"has_{m}", False)) for m in ("audio", "lyrics", "cover")}
        return {
            "item_id": item_id,
            "track_id": row["track_id"],
            "artist": row["artist"],
            "title": row["title"],
            "album": row.get("album"),
            "genre": row.get("genre"),
            "modalities": modalities,
            "cold": bool(self.cold[item_id]),
            "embedded": bool(self.embeddable[item_id]),
            "plays": int(self.play_counts[item_id]),
            "attention": self.explain([item_id])[item_id],
        }

    def search(self, query: str, limit: int = 20) -> dict:
        """Users whose id and tracks whose id, artist, title or album contain `query`
        (case-insensitive), at most `limit` of each."""
        needle = query.strip().lower()
        if not needle:
            raise BadRequest("an empty search: give part of a user id, artist or title")
        users = [u for u in sorted(self.user_rows) if needle in u.lower()][:limit]
        text = pl.concat_str(
            [pl.col(c).fill_null("") for c in ("track_id", "artist", "title", "album")],
            separator=" | ",
        ).str.to_lowercase()
        hits = self.catalog.filter(text.str.contains(needle, literal=True)).head(limit)
        return {"users": users, "tracks": self.describe(hits["item_id"].to_numpy())}


MAX_K = 1000
"""The most recommendations one answer holds."""
MAX_HISTORY = 10_000
"""The most tracks an ad-hoc history may have (the user tower reads its newest ones)."""


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k={k} is out of range: give 1 to {MAX_K}")
