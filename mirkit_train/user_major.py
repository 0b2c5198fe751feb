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


def window_batch(
    split: Split, spans: np.ndarray, max_len: int, memory: int = 0
) -> tuple[torch.Tensor, ...]:
    """(inputs, targets, input times, target times), each [B, W], right-aligned and
    left-padded with 0: position p's target is the play after input p, and its time is
    the request time of position p. Each window's inputs are preceded by up to `memory`
    earlier plays of its user (targets 0 there: context for the repeat part, which reads
    further back than the Transformer's last max_len columns). W = the longest row in the
    batch (short-history datasets then cost a fraction of max_len + memory)."""
    items, times = np.asarray(split.plays.items), np.asarray(split.plays.times)
    firsts = np.asarray(split.plays.indptr)[
        np.searchsorted(split.plays.indptr, spans[:, 0], "right") - 1
    ]
    starts = np.maximum(firsts, spans[:, 0] - memory) if len(spans) else spans[:, 0]
    width = int((spans[:, 1] - starts).max()) - 1 if len(spans) else 1
    out = np.zeros((4, len(spans), width), dtype=np.int64)
    for r, ((start, end), first) in enumerate(zip(spans, starts, strict=True)):
        out[0, r, width - (end - 1 - first) :] = items[first : end - 1]
        out[2, r, width - (end - 1 - first) :] = times[first : end - 1]
        out[1, r, width - (end - start - 1) :] = items[start + 1 : end]
        out[3, r, width - (end - 1 - first) :] = times[first + 1 : end]
    return tuple(torch.from_numpy(a) for a in out)


class UserMajorBatches:
    def __init__(
        self,
        split: Split,
        max_len: int,
        batch_size: int,
        seed: int,
        shift_windows: bool,
        memory: int = 0,
    ):
        self.split, self.max_len, self.batch_size, self.seed = split, max_len, batch_size, seed
        self.shift_windows, self.memory = shift_windows, memory
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
            yield window_batch(self.split, chosen, self.max_len, self.memory)
