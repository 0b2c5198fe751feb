"""User-major batches: windows of users' training sequences, every position predicting
its next play (SASRec's all-position loss).

Each user's training prefix is cut into windows of max_len + 1 plays ending at the
prefix end and stepping back by max_len, so long histories contribute every play once
instead of only their last max_len. With shifted windows the cuts move each epoch
(better on LastFM, lower top-10 coverage on the demo: BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mirkit.data.plays import Split


def windows(split: Split, max_len: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """[W, 2] (start, end) row ranges of training windows (end exclusive).

    With `rng`, the last window of a prefix longer than one window holds a random
    number of targets (1..max_len), which moves every window boundary before it: over
    the epochs a play is predicted after histories of different lengths instead of
    always the same cut, and still once per epoch."""
    out = []
    starts = np.asarray(split.plays.indptr[:-1])
    for user_start, end in zip(starts, split.prefix_end, strict=True):
        user_start, end = int(user_start), int(end)
        if rng is not None and end - user_start > max_len + 1:
            start = end - 1 - int(rng.integers(1, max_len + 1))
            out.append((start, end))
            end = start + 1
        while end - user_start >= 2:
            start = max(user_start, end - max_len - 1)
            out.append((start, end))
            end = start + 1 if start > user_start else user_start
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def window_batch(split: Split, spans: np.ndarray, max_len: int) -> tuple[torch.Tensor, ...]:
    """(inputs, targets, input times, target times), each [B, W], left-padded with 0, W =
    the longest window in the batch (at most max_len; short-history datasets then cost a
    fraction of max_len): position p's target is the play after input p, and its time is
    the request time of position p."""
    items, times = np.asarray(split.plays.items), np.asarray(split.plays.times)
    width = min(max_len, int((spans[:, 1] - spans[:, 0]).max()) - 1) if len(spans) else 1
    out = np.zeros((4, len(spans), width), dtype=np.int64)
    for r, (start, end) in enumerate(spans):
        first = width - (end - start - 1)
        out[0, r, first:] = items[start : end - 1]
        out[1, r, first:] = items[start + 1 : end]
        out[2, r, first:] = times[start : end - 1]
        out[3, r, first:] = times[start + 1 : end]
    return tuple(torch.from_numpy(a) for a in out)


class UserMajorBatches:
    def __init__(self, split: Split, max_len: int, batch_size: int, seed: int, shift_windows: bool):
        self.split, self.max_len, self.batch_size, self.seed = split, max_len, batch_size, seed
        self.shift_windows = shift_windows
        self.spans = windows(split, max_len)

    def steps_per_epoch(self, world: int = 1) -> int:
        """Batches per rank: every rank runs the same number of steps (shifted windows are
        never fewer than the unshifted ones counted here)."""
        return max(1, len(self.spans) // (self.batch_size * world))

    def epoch(
        self, epoch: int, start: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of the epoch from step `start` on (a resumed epoch skips
        the steps already done): rank r takes batches r, r + world, ..."""
        spans = self.spans
        if self.shift_windows:
            spans = windows(self.split, self.max_len, np.random.default_rng([self.seed, epoch, 1]))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(spans))
        for step in range(start, self.steps_per_epoch(world)):
            first = (step * world + rank) * self.batch_size
            chosen = spans[order[first : first + self.batch_size]]
            yield window_batch(self.split, chosen, self.max_len)
