"""Recommendations from a trained run and its index: for a known listener, for an ad-hoc
history, and item-to-item neighbours.

Only the user tower and the index are loaded; the full model (content encoders) only for
`explain`, which re-embeds the recommended items to read their attention per modality.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mirkit.data.content import catalogue_batches, local_shard_urls
from mirkit.data.plays import first_play_times, load_plays
from mirkit.errors import MirkitError
from mirkit.index import IndexMismatch, load_run_index
from mirkit.runs import TrainedRun
from mirkit.shards.reader import shards_holding

LIVE_LOG = 24 * 3600
"""A log whose newest play is younger than this (seconds) is live: requests are now."""
SESSION_GAP = 30 * 60
"""A request to an ended log comes this long after the listener's last play: a new
session (30 minutes, the usual inactivity threshold of session studies)."""


class UnknownId(MirkitError, LookupError):
    """A user or track id the shards do not know; the message says how to list them."""


@dataclass
class Recommendation:
    rank: int
    item_id: int
    artist: str
    title: str
    score: float
    played: bool

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
        self.user_tower = self.run.load_user_tower(index=self.index)
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
        out = np.full(self.index.n_items + 1, "", dtype=object)
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
        """An item id from a track id (MusicBrainz) or "Artist - Title"."""
        found = self.track_ids.get(text.strip().lower())
        if found is None:
            raise UnknownId(
                f"unknown track {text!r}: give a track id or 'Artist - Title' from "
                f"{self.shards}/catalog.parquet (`mirkit similar --list-tracks --run "
                f"{self.run.path}` lists them)"
            )
        return found

    def describe(self, item_ids: np.ndarray) -> list[dict]:
        known = len(self.artists)
        return [
            {
                "item_id": int(i),
                "artist": self.artists[i] if i < known else "(unknown track)",
                "title": self.titles[i] if i < known else "",
            }
            for i in item_ids
        ]

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
    ) -> list[list[Recommendation]]:
        """The top-k of each history (item ids, oldest first) with its play `times`, for
        a request at `at` (both default to positions: one step after the last play), by
        `SASRec.score`: the scores `mirkit eval` ranks by."""
        history, played = self._padded(histories, times)
        request = torch.tensor(at, dtype=torch.int64) if at is not None else None
        exclude = [np.unique(h) for h in histories] if exclude_seen else None
        if self.backend == "exact":
            scores = self.user_tower.score(history, self.items, played, request)
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
            Recommendation(r + 1, int(i), self.artists[i], self.titles[i], float(s), int(i) in seen)
            for r, (s, i) in enumerate(zip(scores, ids, strict=True))
            if np.isfinite(s)
        ]

    @torch.no_grad()
    def explain(self, item_ids: list[int]) -> dict[int, dict[str, float]]:
        """Attention mass per modality of each item's fused embedding (loads the full
        model and reads the items' content from the shards)."""
        model = self.run.load_model()
        wanted = set(item_ids)
        holding = set(shards_holding(self.shards, wanted))
        urls = [u for u in local_shard_urls(self.shards, self.manifest) if Path(u).name in holding]
        out: dict[int, dict[str, float]] = {}
        tabular = self.run.tabular(self.catalog)
        for batch in catalogue_batches(urls, self.run.input_spec, 64, tabular):
            keep = torch.tensor([int(i) in wanted for i in batch.item_ids])
            if not keep.any():
                continue
            batch = batch.select(keep.nonzero()[:, 0])
            _, mass = model.item_tower.encode(batch, explain=True)
            for row, item in enumerate(batch.item_ids.tolist()):
                out[item] = {kind: round(float(m[row]), 3) for kind, m in (mass or {}).items()}
        return out
