"""The catalogue index: every item's embedding from a trained model, and top-K search.

`runs/NAME/index.h5` (HDF5, h5py): `embeddings` [n_items + 1, dim] float32 (row = item
id; row 0, padding, and items the model cannot embed are zero), `attention` [n_items + 1,
kinds] float32 (each item's attention mass per modality, the meta's `attention_kinds`:
what `--explain` shows, stored so that explaining costs nothing at request time), `warm`
[n_items + 1] bool (the item had training plays; the others are cold) and, as
attributes, the fingerprints of the model and of the shards that produced it. Search is
exact by blocked matrix products, or approximate through FAISS (IVF, inner product) for
catalogues where exact search is too slow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mirkit import log
from mirkit.data.content import InputSpec, catalogue_loader, local_shard_urls
from mirkit.distributed import ONE_PROCESS, World, all_reduce_sum
from mirkit.errors import MirkitError
from mirkit.files import atomic_path, sha256_file
from mirkit.ids import ItemIds
from mirkit.models.item_tower import TOKEN_KINDS, ItemBatch
from mirkit.models.two_tower import WEIGHTS_FILE, TwoTower
from mirkit.models.user_tower import CatalogueEmbedding
from mirkit.serving.runs import TrainedRun

INDEX_FILE = "index.h5"
FORMAT_VERSION = 2
ATTENTION_KINDS = ("id", *TOKEN_KINDS)


class IndexMismatch(MirkitError, ValueError):
    """An index, a model and a shards directory that do not belong together."""


def load_run_index(run: TrainedRun) -> ItemIndex:
    """The run's index, refused unless the run's own model built it: another model's
    embeddings would be scored against this user tower and give wrong results."""
    path = run.path / INDEX_FILE
    index = ItemIndex.load(path)
    if index.meta.get("model_sha256") != model_fingerprint(run.model_dir):
        raise IndexMismatch(
            f"{path} was built by another model than {run.model_dir}: rebuild it with "
            f"`mirkit index --run {run.path}`"
        )
    return index


def model_fingerprint(model_dir: Path) -> str:
    """sha256 of the saved weights: which model an index was built with."""
    return sha256_file(model_dir / WEIGHTS_FILE)


@torch.no_grad()
def embed_catalogue(
    model: TwoTower,
    n_items: int,
    urls: list[str],
    spec: InputSpec,
    device: torch.device,
    batch_size: int = 64,
    tabular: np.ndarray | None = None,
    share: tuple[int, int] = (0, 1),
    on_batch: Callable[[int], None] | None = None,
    workers: int = 0,
    attention: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """[n_items + 1, dim] item embeddings (row 0, padding, is zero). Items whose
    embedding reads content (`ItemTower.reads_content`: every item of a content model,
    only the cold ones with `content_for="cold"`) come from the shards, streamed once
    (centre crops) and decoded in `workers` loader processes; the others need no shard.
    `share` = (r, W): fill only every W-th of the other items and of the shards, starting
    at r; the caller sums the shares. `on_batch(n)` is called with the items of each
    batch done. A dict passed as `attention` is filled with each item's attention mass
    per modality ({kind: [n_items + 1]}, what `--explain` shows)."""
    model.eval()
    r, w = share
    rows = ItemIds(n_items).rows
    table = torch.zeros(rows, model.config.dim, device=device)

    def embed(batch: ItemBatch) -> None:
        if attention is None:
            table[batch.item_ids] = model.items(batch).float()
            return
        embedding, mass = model.item_tower.encode(batch, explain=True)
        table[batch.item_ids] = embedding.float()
        for kind, share_of_kind in mass.items():
            column = attention.setdefault(kind, torch.zeros(rows, device=device))
            column[batch.item_ids] = share_of_kind.float()

    every_id = torch.arange(1, rows, device=device)
    from_shards = torch.zeros_like(every_id, dtype=torch.bool)
    if spec.mel_frames is not None or spec.max_tokens is not None or spec.cover_size is not None:
        from_shards = model.item_tower.reads_content(every_id)
    ids = every_id[~from_shards][r::w]
    for start in range(0, len(ids), 4096):
        chunk = ids[start : start + 4096]
        batch = ItemBatch(item_ids=chunk)
        if tabular is not None:
            batch.tabular = torch.from_numpy(tabular[chunk.cpu().numpy()]).to(device)
        embed(batch)
        if on_batch:
            on_batch(len(chunk))
    if not from_shards.any():
        return table
    wanted = np.concatenate([[False], from_shards.cpu().numpy()])
    for batch in catalogue_loader(urls[r::w], spec, batch_size, tabular, workers, wanted):
        embed(batch.to(device))
        if on_batch:
            on_batch(len(batch.item_ids))
    return table


@dataclass
class ItemIndex:
    embeddings: np.ndarray  # [n_items + 1, dim] float32
    meta: dict = field(default_factory=dict)
    attention: np.ndarray | None = None  # [n_items + 1, len(meta["attention_kinds"])]
    warm: np.ndarray | None = None  # [n_items + 1] bool
    _faiss: object | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        """The items of the catalogue it was built (or updated) on: rows 1..n."""
        return len(self.embeddings) - 1

    @property
    def ids(self) -> ItemIds:
        return ItemIds(self.n_items)

    def save(self, path: Path) -> None:
        """Written to a temporary name and renamed, so a reader never sees half a file."""
        import h5py

        with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
            f.create_dataset("embeddings", data=self.embeddings, chunks=True)
            for name in ("attention", "warm"):
                if getattr(self, name) is not None:
                    f.create_dataset(name, data=getattr(self, name))
            f.attrs["meta"] = json.dumps(self.meta)
            f.attrs["format_version"] = FORMAT_VERSION

    @classmethod
    def load(cls, path: Path) -> ItemIndex:
        import h5py

        if not path.exists():
            raise IndexMismatch(
                f"{path} does not exist: build it with `mirkit index --run {path.parent}`"
            )
        try:
            with h5py.File(path, "r") as f:
                version = int(f.attrs.get("format_version", 0))
                if version != FORMAT_VERSION:
                    raise IndexMismatch(
                        f"{path} is index format {version}; this mirkit reads "
                        f"{FORMAT_VERSION}: rebuild it with `mirkit index --run {path.parent}`"
                    )
                embeddings = np.asarray(f["embeddings"], dtype=np.float32)
                parts = {name: np.asarray(f[name]) for name in ("attention", "warm") if name in f}
                return cls(embeddings, json.loads(f.attrs["meta"]), **parts)
        except (OSError, KeyError) as err:  # truncated, not HDF5, or missing parts
            raise IndexMismatch(
                f"{path} cannot be read ({err}): rebuild it with `mirkit index --run {path.parent}`"
            ) from err

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: list[np.ndarray] | None = None,
        backend: str = "exact",
        nprobe: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], item ids [Q, k]) by inner product, best first. exclude[q]: item
        ids never returned for query q. Items with a zero embedding (not embeddable) are
        never returned by the exact backend."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if backend == "faiss":
            return self._search_faiss(queries, k, exclude, nprobe)
        return exact_top_k(queries, self.embeddings, k, exclude)

    def _search_faiss(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._faiss is None:
            self._faiss = build_faiss(self.embeddings)
        self._faiss.nprobe = nprobe
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        scores, ids = self._faiss.search(queries, k + extra)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.zeros((len(queries), k), dtype=np.int64)
        for q in range(len(queries)):
            keep = ids[q] > 0
            if exclude:
                keep &= ~np.isin(ids[q], exclude[q])
            chosen = ids[q][keep][:k]
            out_ids[q, : len(chosen)] = chosen
            out_scores[q, : len(chosen)] = scores[q][keep][:k]
        return out_scores, out_ids


def exact_top_k(
    queries: np.ndarray,
    table: np.ndarray,
    k: int,
    exclude: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by blocked matrix products over table rows 1..n (zero rows never returned);
    blocks of queries hold at most 2^26 scores (256 MB)."""
    items = torch.from_numpy(table)
    block = max(1, min(1024, (1 << 26) // len(table)))
    unusable = (items == 0).all(dim=1)
    unusable[0] = True
    k = min(k, int((~unusable).sum()))
    scores_out, ids_out = [], []
    for start in range(0, len(queries), block):
        scores = torch.from_numpy(queries[start : start + block]) @ items.T
        scores[:, unusable] = float("-inf")
        if exclude is not None:
            for r, ids in enumerate(exclude[start : start + block]):
                scores[r, torch.as_tensor(ids, dtype=torch.long)] = float("-inf")
        top = torch.topk(scores, k, dim=1)
        scores_out.append(top.values.numpy())
        ids_out.append(top.indices.numpy())
    if not scores_out:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(scores_out), np.concatenate(ids_out).astype(np.int64)


def build_faiss(table: np.ndarray, lists: int | None = None):
    """An IVF-Flat inner-product index over rows 1..n (ids = item ids), trained on the
    table itself; about 4 sqrt(n) lists."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "the FAISS backend needs faiss-cpu: `uv sync --extra faiss` (or pip install "
            "faiss-cpu), or use the exact backend"
        ) from err
    vectors = np.ascontiguousarray(table[1:], dtype=np.float32)
    ids = np.arange(1, len(table), dtype=np.int64)
    usable = ~(vectors == 0).all(axis=1)
    vectors, ids = vectors[usable], ids[usable]
    lists = lists or max(1, min(len(vectors) // 39, int(4 * np.sqrt(len(vectors)))))
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    return index


def embeddable_items(model: TwoTower, catalog) -> np.ndarray:
    """[n + 1] bool: items the model has something to embed from - an id it trained, an
    artist or album it knows (`CatalogueEmbedding`), or content of a modality it reads.
    The others get a zero row (never recommended)."""
    usable = np.zeros(ItemIds(int(catalog["item_id"].max())).rows, dtype=bool)
    modalities = set(model.config.modalities)
    if "id" in modalities:
        warm = model.item_tower.warm.cpu().numpy()[: ItemIds(model.n_items).rows]
        usable[: len(warm)] |= warm
        table = model.item_tower.id_table
        if isinstance(table, CatalogueEmbedding):
            grouped = (table.artist_of > 0) | (table.album_of > 0)
            usable[: len(warm)] |= grouped.cpu().numpy()[: len(warm)]
    ids = catalog["item_id"].to_numpy()
    for modality, column in (
        ("audio", "has_audio"),
        ("lyrics", "has_lyrics"),
        ("cover", "has_cover"),
    ):
        if modality in modalities and column in catalog.columns:
            usable[ids[catalog[column].to_numpy()]] = True
    if "tabular" in modalities:
        usable[ids] = True
    usable[0] = False
    return usable


def build_index(
    run: TrainedRun,
    shards: Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    update: bool = False,
    world: World = ONE_PROCESS,
) -> dict:
    """Embed the catalogue with the run's best model into runs/NAME/index.h5. `update`:
    keep the existing rows and embed only items added since (shards grown with
    `--append`), without retraining. With several ranks each embeds every W-th shard
    (or item), the rows are summed across ranks and rank 0 writes the file (HDF5 has
    one writer)."""
    started = time.perf_counter()
    device = torch.device(device)
    shards = run.shards(shards)
    manifest, catalog = run.check_shards(shards)
    n_now = int(catalog["item_id"].max())
    model = run.load_model(device)
    fingerprint = model_fingerprint(run.model_dir)
    path = run.path / INDEX_FILE
    urls = local_shard_urls(shards, manifest)
    previous = _index_to_update(path, fingerprint, run.model_dir) if update else None
    first_new = 1
    if previous is not None:
        first_new = previous.ids.oov  # the first id it has no row for
        urls = [
            u
            for u, shard in zip(urls, manifest["shards"], strict=True)
            if max(shard["item_ids"], default=0) >= first_new
        ]
    todo = n_now - first_new + 1
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    attention: dict[str, torch.Tensor] = {}
    with log.progress() as bar, bf16:
        task = bar.add_task("embedding the catalogue", total=max(todo, 0))
        table = embed_catalogue(
            model,
            n_now,
            urls,
            run.input_spec,
            device,
            batch_size,
            run.tabular(catalog),
            share=(world.rank, world.size),
            on_batch=lambda n: bar.update(task, advance=n * world.size),  # about
            attention=attention,
        )
        bar.update(task, completed=max(todo, 0))
    embeddings = all_reduce_sum(world, table).cpu().numpy()
    masses = _attention_table(attention, table, world)
    if previous is not None:
        _keep_rows(previous, first_new, embeddings, masses)
    usable = embeddable_items(model, catalog)
    embeddings[~usable] = 0.0
    masses[~usable] = 0.0
    kinds = [k for k, column in zip(ATTENTION_KINDS, masses.T, strict=True) if column.any()]
    index = ItemIndex(
        embeddings.astype(np.float32),
        {
            "model_sha256": fingerprint,
            "id_map": run.record["shards_fingerprints"]["id_map"],
            "content_config": manifest["fingerprints"]["content_config"],
            "trained_items": run.n_items,
            "shards": str(shards),
            "dim": int(embeddings.shape[1]),
            "attention_kinds": kinds,
        },
        attention=masses[:, [ATTENTION_KINDS.index(k) for k in kinds]].astype(np.float32),
        warm=_warm_rows(model, n_now),
    )
    if world.main:
        index.save(path)
    seconds = time.perf_counter() - started
    return {
        "index": str(path),
        "items": n_now,
        "embedded now": max(todo, 0),
        "kept from before": first_new - 1 if previous is not None else 0,
        "not embeddable (zero rows)": int((~usable[1:]).sum()),
        "ranks": world.size,
        "seconds": round(seconds, 1),
        "items/s": round(max(todo, 0) / seconds, 1),
    }


def _warm_rows(model: TwoTower, n_items: int) -> np.ndarray:
    """[rows of n_items ids] True for the items the model trained an id row for."""
    warm = np.zeros(ItemIds(n_items).rows, dtype=bool)
    trained = model.item_tower.warm.cpu().numpy()[1 : min(model.n_items, n_items) + 1]
    warm[1 : len(trained) + 1] = trained
    return warm


def _index_to_update(path: Path, fingerprint: str, model_dir: Path) -> ItemIndex:
    """The index `--update` extends: it must come from the same model."""
    previous = ItemIndex.load(path)
    if previous.meta.get("model_sha256") != fingerprint:
        raise IndexMismatch(
            f"{path} was built by another model than {model_dir}: rebuild it without --update"
        )
    return previous


def _keep_rows(
    previous: ItemIndex, first_new: int, embeddings: np.ndarray, masses: np.ndarray
) -> None:
    """Copy (in place) the rows of the items `previous` already holds, ids < first_new."""
    embeddings[:first_new] = previous.embeddings[:first_new]
    masses[:first_new] = 0.0
    for column, kind in enumerate(previous.meta["attention_kinds"]):
        masses[:first_new, ATTENTION_KINDS.index(kind)] = previous.attention[:first_new, column]


def _attention_table(attention: dict[str, torch.Tensor], like: torch.Tensor, world: World):
    """[rows of `like`, len(ATTENTION_KINDS)] of the masses `embed_catalogue` filled,
    summed over ranks: every rank stacks the same kinds in one order (zeros for kinds it
    never saw)."""
    zeros = torch.zeros(len(like), device=like.device)
    columns = [attention.get(kind, zeros) for kind in ATTENTION_KINDS]
    return all_reduce_sum(world, torch.stack(columns, dim=1)).cpu().numpy()
