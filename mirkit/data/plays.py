"""Plays as compact arrays, splits and training targets.

`interactions.parquet` becomes CSR arrays (int64 user offsets, int32 item ids, int64
timestamps), built once and cached next to the shards as .npy files that every process
memory-maps: no Python object per play, nothing copied per worker. Splits say which rows
are training targets, which are validation and test targets; a held-out row is never a
training target, and a training target's history never contains a held-out play.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from mirkit.errors import OptionError
from mirkit.ids import ItemIds

logger = logging.getLogger(__name__)

CACHE = ".cache"
SPLITS = ("leave-one-out", "global-time")


@dataclass(frozen=True)
class PlayArrays:
    indptr: np.ndarray  # [U + 1] int64: user u's plays are rows indptr[u]:indptr[u+1]
    items: np.ndarray  # [P] int32 item ids, each user's plays in time order
    times: np.ndarray  # [P] int64

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def user_of_rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.indptr))


def _cached(directory: Path, build) -> dict[str, np.ndarray]:
    """Arrays from `directory/*.npy` (memory-mapped), building and saving them first if
    absent; when the directory cannot be written, the arrays stay in memory.

    Several processes (DDP ranks, loader workers) may build at once. Each writes into a
    private directory and renames it into place, so no one ever reads a half-written
    file; whoever renames second drops its copy and reads the first one's."""
    if not (directory / "done.json").exists():
        arrays = build()
        try:
            _publish(directory, arrays)
        except OSError as error:
            logger.warning(
                "play cache not written (%s): the arrays stay in memory for this run; if "
                "%s is a leftover of an interrupted build, delete it",
                error,
                directory,
            )
            return arrays
    names = json.loads((directory / "done.json").read_text())
    return {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in names}


def _publish(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for name, array in arrays.items():
            np.save(private / f"{name}.npy", array)
        (private / "done.json").write_text(json.dumps(sorted(arrays)))
        try:
            private.rename(directory)
        except OSError:
            if not (directory / "done.json").exists():
                raise
    finally:
        shutil.rmtree(private, ignore_errors=True)


def load_plays(shards_dir: Path, fingerprint: str) -> PlayArrays:
    """The shards' plays as CSR arrays, cached under `.cache/plays-<fingerprint>/`."""

    def build() -> dict[str, np.ndarray]:
        frame = pl.read_parquet(
            shards_dir / "interactions.parquet", columns=["user_idx", "item_id", "timestamp"]
        )
        users = frame["user_idx"].to_numpy()
        n_users = int(users.max()) + 1 if len(users) else 0
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return {
            "indptr": indptr,
            "items": frame["item_id"].to_numpy().astype(np.int32),
            "times": frame["timestamp"].to_numpy().astype(np.int64),
        }

    arrays = _cached(shards_dir / CACHE / f"plays-{fingerprint[:16]}", build)
    return PlayArrays(arrays["indptr"], arrays["items"], arrays["times"])


def _keep_rows(plays: PlayArrays, keep: np.ndarray) -> PlayArrays:
    users = plays.user_of_rows()[keep]
    indptr = np.zeros(plays.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=plays.n_users), out=indptr[1:])
    return PlayArrays(indptr, np.asarray(plays.items)[keep], np.asarray(plays.times)[keep])


def drop_repeats(plays: PlayArrays) -> PlayArrays:
    """Remove back-to-back repeats (the same item right after itself, same user)."""
    items, users = np.asarray(plays.items), plays.user_of_rows()
    repeat = np.zeros(len(items), dtype=bool)
    repeat[1:] = (items[1:] == items[:-1]) & (users[1:] == users[:-1])
    return _keep_rows(plays, ~repeat)


def k_core(plays: PlayArrays, k: int) -> PlayArrays:
    """Iteratively drop plays of users and items with fewer than k plays."""
    while True:
        items, users = np.asarray(plays.items), plays.user_of_rows()
        item_ok = np.bincount(items)[items] >= k
        user_ok = np.bincount(users, minlength=plays.n_users)[users] >= k
        keep = item_ok & user_ok
        if keep.all():
            return plays
        plays = _keep_rows(plays, keep)


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "leave-one-out"
    val_quantile: float = 0.85  # global-time: validation from here ...
    test_quantile: float = 0.9  # ... test from here (all later plays)
    drop_repeats: bool = False
    k_core: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SPLITS:
            raise OptionError(f"split {self.kind!r}: choose one of {', '.join(SPLITS)}")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Split:
    """Rows of `plays` that are training, validation and test targets. A target's history
    is every earlier play of its user."""

    plays: PlayArrays
    train_rows: np.ndarray  # int64, sorted
    val_rows: np.ndarray
    test_rows: np.ndarray
    prefix_end: np.ndarray  # [U] int64: end row of each user's training prefix

    def train_counts(self, n_items: int) -> np.ndarray:
        """Training plays of each item id [n_items + 1] (index 0: padding, 0 plays)."""
        items = np.asarray(self.plays.items)[self.train_rows]
        rows = ItemIds(n_items).rows
        return np.bincount(items, minlength=rows)[:rows]

    def plays_before(self, row: int) -> np.ndarray:
        """Every play of the user before `row`, oldest first (not cut to max_len)."""
        return np.asarray(self.plays.items[self.user_start(row) : row], dtype=np.int64)

    def seen_before(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which [E], items [E]): every play of each user before rows[which] (repeats
        kept), the rows in order: `plays_before` for many rows at once."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.user_start(rows)
        counts = rows - starts
        which = np.repeat(np.arange(len(rows)), counts)
        within = np.arange(len(which)) - np.repeat(np.cumsum(counts) - counts, counts)
        return which, np.asarray(self.plays.items, dtype=np.int64)[starts[which] + within]

    def history(self, row: int, max_len: int) -> np.ndarray:
        """The up to `max_len` plays before `row`, left-padded with 0."""
        return self.window(row, max_len)[0]

    def window(self, row: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, times) of the up to `max_len` plays before `row`, left-padded with 0."""
        items, times = self.windows(np.array([row]), max_len)
        return items[0], times[0]

    def windows(self, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, times) [R, max_len]: `window` of each of `rows` at once."""
        rows = np.asarray(rows, dtype=np.int64)
        places = rows[:, None] - max_len + np.arange(max_len)[None, :]
        real = places >= self.user_start(rows)[:, None]
        places = np.where(real, places, 0)
        items = np.where(real, np.asarray(self.plays.items)[places], 0).astype(np.int64)
        times = np.where(real, np.asarray(self.plays.times)[places], 0).astype(np.int64)
        return items, times

    def user_start(self, rows):
        """The first row of the user of each of `rows` (an int for an int)."""
        indptr = np.asarray(self.plays.indptr)
        starts = indptr[np.searchsorted(indptr, rows, side="right") - 1]
        return int(starts) if np.ndim(starts) == 0 else starts.astype(np.int64)


def make_split(plays: PlayArrays, config: SplitConfig) -> Split:
    if config.drop_repeats:
        plays = drop_repeats(plays)
    if config.k_core:
        plays = k_core(plays, config.k_core)
    start, end = plays.indptr[:-1], plays.indptr[1:]
    rows = np.arange(len(plays.items), dtype=np.int64)
    first = np.zeros(len(rows), dtype=bool)
    first[start[end > start]] = True
    if config.kind == "leave-one-out":
        enough = (end - start) >= 3
        test = (end - 1)[enough]
        val = (end - 2)[enough]
        prefix_end = np.where(enough, end - 2, end)
    else:
        times = np.asarray(plays.times)
        val_cut, test_cut = np.quantile(times, [config.val_quantile, config.test_quantile])
        has_past = np.repeat(
            (times[start.clip(max=len(times) - 1)] < val_cut) & (end > start), end - start
        )
        val = rows[(times >= val_cut) & (times < test_cut) & has_past]
        test = rows[(times >= test_cut) & has_past]
        prefix_end = start + np.array(
            [np.searchsorted(times[s:e], val_cut) for s, e in zip(start, end, strict=True)],
            dtype=np.int64,
        )
    in_prefix = rows < np.repeat(prefix_end, end - start)
    train = rows[in_prefix & ~first]
    return Split(
        plays,
        train,
        np.asarray(val, dtype=np.int64),
        np.asarray(test, dtype=np.int64),
        prefix_end.astype(np.int64),
    )


def item_target_rows(split: Split, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR from item id to its training-target rows: rows of item i are
    `rows[offsets[i]:offsets[i+1]]` (int64 offsets [n_items + 2], int64 rows)."""
    items = np.asarray(split.plays.items)[split.train_rows]
    order = np.argsort(items, kind="stable")
    ids = ItemIds(n_items)
    offsets = np.zeros(ids.rows_with_oov, dtype=np.int64)
    np.cumsum(np.bincount(items, minlength=ids.rows), out=offsets[1:])
    return offsets, split.train_rows[order]


def first_play_times(plays: PlayArrays, n_items: int) -> np.ndarray:
    """[n_items + 2] int64: when each item id was first played in the log (a huge value
    for never). Read only causally: an item counts as played for a request after it."""
    from mirkit.models.history import NOT_PLAYED

    ids = ItemIds(n_items)
    first = np.full(ids.rows_with_oov, NOT_PLAYED, dtype=np.int64)
    items = np.asarray(plays.items)
    kept = items <= ids.oov
    np.minimum.at(first, items[kept], np.asarray(plays.times)[kept])
    return first
