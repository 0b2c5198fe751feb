"""The item id space that every table, model and file shares.

Item ids are dense integers from the shards' id map: 0 is padding (an empty history
slot, never an item), 1..n are the catalogue's items in id-map order, and n + 1 is the
out-of-vocabulary id, the row a model reads for any id it has no row of its own for (an
unknown track in an ad-hoc history, a track appended after training).

Two sizes exist side by side and differ once shards grow with `mirkit shards build
--append`: the items a model was trained with (`TrainedRun.ids`, `SASRec.ids`: its
tables) and the items of the catalogue now (`ItemIndex.ids`: the index's rows). Code
says which it means by which `ItemIds` it asks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ItemIds:
    """Items 1..n."""

    n: int

    @property
    def rows(self) -> int:
        """Rows of a table indexed by item id: padding and the items (the index,
        catalogue embeddings, per-item counts)."""
        return self.n + 1

    @property
    def oov(self) -> int:
        """The out-of-vocabulary id: one past the last item."""
        return self.n + 1

    @property
    def rows_with_oov(self) -> int:
        """Rows of a model's id tables and per-id buffers: padding, items and OOV."""
        return self.n + 2

    def known(self, item_id: int) -> bool:
        """Whether `item_id` is one of the items (not padding, not beyond them)."""
        return 0 < item_id <= self.n
