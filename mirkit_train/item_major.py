"""Item-major streaming: the expensive content is per item, plays are small integers, so
stream item shards and pair each item with user contexts sampled in memory.

- Every DataLoader worker draws shards at random (with replacement) from *all* shards,
  seeded by (seed, epoch, rank, worker, first step), so every item is emitted at the same
  rate whatever the number of ranks and workers, the stream never runs dry (uneven
  shards cannot make one rank finish early) and an epoch resumed at step s draws fresh
  batches for its remaining steps. A split of the shards by rank and worker would tie
  each reader's emission rates to its own shards' sizes and end readers at different
  times; the step count per epoch is fixed from the index instead.
- Item i is emitted e_i = min(cap, n_i / K) times per pass on average (n_i: its training
  targets; stochastic rounding), so the objective follows the play distribution while one
  hit cannot flood a batch. Its emission probability is q_i = e_i / sum(e): `log_q` is
  exactly what the logQ correction needs.
- Each emission carries K histories that end right before K of the item's training
  targets (drawn with replacement). Held-out rows are never targets.
- Batches are structural: M distinct items, K contexts each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mirkit.data.content import InputSpec, collate_items, decode_item, forked_loader
from mirkit.data.plays import Split, item_target_rows
from mirkit.models.item_tower import ItemBatch
from mirkit.shards.reader import read_samples
from mirkit_train.config import TrainConfig


@dataclass
class ItemMajorBatch:
    items: ItemBatch  # M distinct items
    histories: torch.Tensor  # [M, K, L] left-padded item ids
    times: torch.Tensor  # [M, K, L] their play times
    target_rows: torch.Tensor  # [M, K] rows of the targets (for checks)
    request: torch.Tensor  # [M, K] the targets' times: when each history asks
    log_q: torch.Tensor  # [M] log emission probability of each item


def emission_rates(split: Split, n_items: int, k: int, cap: float) -> np.ndarray:
    """Expected emissions per pass e_i = min(cap, n_i / K) per item id (0 = never)."""
    rates = np.minimum(cap, split.train_counts(n_items) / k)
    rates[0] = 0.0
    return rates


class ItemMajorStream(IterableDataset):
    def __init__(
        self,
        urls: list[str],
        split: Split,
        n_items: int,
        spec: InputSpec,
        k: int,
        m: int,
        max_len: int,
        cap: float,
        seed: int,
        epoch: int,
        rank: int = 0,
        tabular: np.ndarray | None = None,
        first_step: int = 0,
    ):
        super().__init__()
        self.urls, self.split, self.spec = urls, split, spec
        self.k, self.m, self.max_len, self.seed, self.epoch, self.rank = (
            k,
            m,
            max_len,
            seed,
            epoch,
            rank,
        )
        self.tabular, self.first_step = tabular, first_step
        self.rates = emission_rates(split, n_items, k, cap)
        self.log_q = np.log(np.maximum(self.rates, 1e-12) / self.rates.sum())
        self.offsets, self.rows = item_target_rows(split, n_items)

    def _histories(self, rows: np.ndarray) -> np.ndarray:
        """[2, K, L]: the items and times of the histories before `rows`."""
        return np.stack(self.split.windows(rows, self.max_len))

    def _emissions(self, rng: np.random.Generator) -> Iterator[tuple[dict, np.ndarray]]:
        while True:
            url = self.urls[int(rng.integers(len(self.urls)))]
            for sample in read_samples([url]):
                item = decode_item(sample, self.spec, rng)
                i = item["item_id"]
                rate = self.rates[i] if i < len(self.rates) else 0.0
                copies = int(rate) + int(rng.random() < rate - int(rate))
                for _ in range(copies):
                    start, end = self.offsets[i], self.offsets[i + 1]
                    yield item, np.asarray(self.rows[rng.integers(start, end, self.k)])

    def __iter__(self) -> Iterator[ItemMajorBatch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, self.first_step])
        buffer: list[tuple[dict, np.ndarray]] = []
        for emission in self._emissions(rng):
            buffer.append(emission)
            if len(buffer) < 4 * self.m:
                continue
            chosen, seen = [], set()
            for index in rng.permutation(len(buffer)):
                item_id = buffer[index][0]["item_id"]
                if item_id not in seen:
                    seen.add(item_id)
                    chosen.append(int(index))
                if len(chosen) == self.m:
                    break
            if len(chosen) < self.m:
                continue  # too few distinct items buffered yet
            picked = [buffer[i] for i in chosen]
            for i in sorted(chosen, reverse=True):
                buffer.pop(i)
            items = collate_items([it for it, _ in picked], self.spec, self.tabular)
            rows = np.stack([r for _, r in picked])
            histories = np.stack([self._histories(r) for r in rows], axis=1)
            yield ItemMajorBatch(
                items,
                torch.from_numpy(histories[0]),
                torch.from_numpy(histories[1]),
                torch.from_numpy(rows),
                torch.from_numpy(np.asarray(self.split.plays.times)[rows]),
                torch.from_numpy(self.log_q[items.item_ids.numpy()]),
            )


def steps_per_epoch(split: Split, n_items: int, k: int, m: int, cap: float, world: int = 1) -> int:
    """Fixed from the index: one pass's expected emissions over M items per rank."""
    return max(1, int(emission_rates(split, n_items, k, cap).sum() // (m * world)))


def item_major_loader(stream: ItemMajorStream, workers: int) -> DataLoader:
    """Decoding happens in `workers` forked processes (0: in the training process)."""
    return forked_loader(stream, workers)


class ItemMajorBatches:
    """The item-major epochs of a run, with `UserMajorBatches`' interface: the stream of
    (epoch, rank, first step) read through `workers` loader processes."""

    def __init__(
        self,
        urls: list[str],
        split: Split,
        n_items: int,
        spec: InputSpec,
        options: TrainConfig,
        max_len: int,
        tabular: np.ndarray | None,
    ):
        self.urls, self.split, self.n_items, self.spec = urls, split, n_items, spec
        self.options, self.max_len, self.tabular = options, max_len, tabular

    def steps_per_epoch(self, world: int = 1) -> int:
        o = self.options
        return steps_per_epoch(
            self.split, self.n_items, o.contexts, o.items_per_batch, o.emission_cap, world
        )

    def epoch(
        self, epoch: int, start: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[ItemMajorBatch]:
        o = self.options
        stream = ItemMajorStream(
            self.urls,
            self.split,
            self.n_items,
            self.spec,
            o.contexts,
            o.items_per_batch,
            self.max_len,
            o.emission_cap,
            o.seed,
            epoch,
            rank=rank,
            tabular=self.tabular,
            first_step=start,
        )
        return iter(item_major_loader(stream, o.workers))
