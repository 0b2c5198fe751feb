"""Item shard samples -> model inputs (`ItemBatch`), for training, validation and indexing.

Mels are cropped to a fixed number of frames (random crops for training, the centre for
embedding the catalogue); shorter clips are zero-padded with their true length kept, so
the audio encoder masks the padding. Covers are resized and ImageNet-normalised. Lyrics
use the stored token ids, or - when the model's tokenizer is not the one the shards were
built with - the stored raw text is tokenised here, in the loader workers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from mirkit.errors import ShardsError
from mirkit.ids import ItemIds
from mirkit.models.item_tower import ItemBatch
from mirkit.models.resnet import IMAGENET_MEAN, IMAGENET_STD
from mirkit.shards import layout
from mirkit.shards.reader import read_samples
from mirkit.shards.text import saved_tokenizer, token_ids

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]


@dataclass(frozen=True)
class InputSpec:
    """What the model wants from each item (None: the modality is not used)."""

    mel_frames: int | None = None
    n_mels: int = 128
    cover_size: int | None = None
    max_tokens: int | None = None
    pad_token_id: int = 0
    retokenize_with: str | None = None  # a tokenizer directory, when it differs from the shards'
    n_tabular: int = 0


def decode_item(sample: dict, spec: InputSpec, rng: np.random.Generator | None) -> dict:
    """One raw shard sample (bytes per member) -> numpy inputs. `rng` None = centre crop.
    A sample that cannot be decoded names its shard and key (a damaged shard)."""
    try:
        return _decode(sample, spec, rng)
    except (ValueError, OSError, KeyError, EOFError) as err:  # JSON, numpy, PIL, UTF-8
        raise ShardsError(
            f"{sample.get('__url__', 'a shard')}: sample {sample.get('__key__')} cannot be "
            f"decoded ({type(err).__name__}: {err}); check the shards with `mirkit shards "
            f"verify` and rebuild them"
        ) from err


def sample_item_id(sample: dict) -> int:
    """The item id of a raw shard sample, read without decoding its media."""
    return int(json.loads(sample["meta.json"])["item_id"])


def _decode(sample: dict, spec: InputSpec, rng: np.random.Generator | None) -> dict:
    out: dict = {"item_id": sample_item_id(sample)}
    if spec.mel_frames is not None:
        mel = np.zeros((spec.n_mels, spec.mel_frames), dtype=np.float32)
        frames = 0
        if "mel.npy" in sample:
            full = np.load(io.BytesIO(sample["mel.npy"]), allow_pickle=False)
            length = full.shape[1]
            if length > spec.mel_frames:
                slack = length - spec.mel_frames
                start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
                full = full[:, start : start + spec.mel_frames]
            frames = full.shape[1]
            mel[:, :frames] = full
        out["mel"], out["mel_frames"] = mel, frames
    if spec.max_tokens is not None:
        tokens = np.zeros(0, dtype=np.int64)
        if spec.retokenize_with is not None and "lyrics.txt" in sample:
            tokenizer = saved_tokenizer(spec.retokenize_with)
            tokens = token_ids(tokenizer, sample["lyrics.txt"].decode("utf-8"), spec.max_tokens)
        elif "tokens.npy" in sample:
            tokens = np.load(io.BytesIO(sample["tokens.npy"]), allow_pickle=False)
        out["tokens"] = tokens[: spec.max_tokens].astype(np.int64)
    if spec.cover_size is not None:
        cover = np.zeros((3, spec.cover_size, spec.cover_size), dtype=np.float32)
        has_cover = "cover.jpg" in sample
        if has_cover:
            with Image.open(io.BytesIO(sample["cover.jpg"])) as image:
                image = image.convert("RGB").resize(
                    (spec.cover_size, spec.cover_size), Image.Resampling.BILINEAR
                )
                pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
            cover = (pixels - _MEAN) / _STD
        out["cover"], out["has_cover"] = cover, has_cover
    return out


def collate_items(
    items: list[dict], spec: InputSpec, tabular: np.ndarray | None = None
) -> ItemBatch:
    """Decoded items -> an ItemBatch (tokens right-padded with the pad id).
    `tabular` [n_items + 1, F]: numeric features by item id."""
    ids = torch.tensor([it["item_id"] for it in items], dtype=torch.long)
    batch = ItemBatch(item_ids=ids)
    if spec.mel_frames is not None:
        batch.mel = torch.from_numpy(np.stack([it["mel"] for it in items]))
        batch.mel_frames = torch.tensor([it["mel_frames"] for it in items], dtype=torch.long)
    if spec.max_tokens is not None:
        width = max([len(it["tokens"]) for it in items] + [1])
        tokens = np.full((len(items), width), spec.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=bool)
        for r, it in enumerate(items):
            tokens[r, : len(it["tokens"])] = it["tokens"]
            mask[r, : len(it["tokens"])] = True
        batch.tokens, batch.token_mask = torch.from_numpy(tokens), torch.from_numpy(mask)
    if spec.cover_size is not None:
        batch.cover = torch.from_numpy(np.stack([it["cover"] for it in items]))
        batch.has_cover = torch.tensor([it["has_cover"] for it in items], dtype=torch.bool)
    if tabular is not None:
        batch.tabular = torch.from_numpy(tabular[ids.numpy()])
    return batch


def catalogue_batches(
    urls: list[str],
    spec: InputSpec,
    batch_size: int,
    tabular: np.ndarray | None = None,
    wanted: np.ndarray | None = None,
) -> Iterator[ItemBatch]:
    """Every item of the shards once, centre-cropped, in batches (for embedding the
    catalogue); with `wanted` ([ids] bool), only the items it marks (others are not
    decoded)."""
    pending: list[dict] = []
    for sample in read_samples(urls):
        if wanted is not None:
            item_id = sample_item_id(sample)
            if item_id >= len(wanted) or not wanted[item_id]:
                continue
        pending.append(decode_item(sample, spec, rng=None))
        if len(pending) == batch_size:
            yield collate_items(pending, spec, tabular)
            pending = []
    if pending:
        yield collate_items(pending, spec, tabular)


class _CatalogueShards(torch.utils.data.IterableDataset):
    """`catalogue_batches` of the shards, split among DataLoader workers by shard."""

    def __init__(self, urls: list[str], spec: InputSpec, batch_size: int, tabular, wanted):
        super().__init__()
        self.urls, self.spec, self.batch_size = urls, spec, batch_size
        self.tabular, self.wanted = tabular, wanted

    def __iter__(self) -> Iterator[ItemBatch]:
        worker = torch.utils.data.get_worker_info()
        urls = self.urls[worker.id :: worker.num_workers] if worker else self.urls
        yield from catalogue_batches(urls, self.spec, self.batch_size, self.tabular, self.wanted)


def _as_is(batch):
    return batch


def forked_loader(batches: torch.utils.data.IterableDataset, workers: int):
    """A DataLoader over an iterable of ready batches, produced in `workers` forked
    processes (0: in this one); batches pass through as they are (no collation)."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        multiprocessing_context="fork" if workers else None,
    )


def catalogue_loader(
    urls: list[str],
    spec: InputSpec,
    batch_size: int,
    tabular: np.ndarray | None = None,
    workers: int = 0,
    wanted: np.ndarray | None = None,
) -> Iterable[ItemBatch]:
    """`catalogue_batches`, decoded in `workers` forked processes (each reads its own
    shards) while the caller runs the model; 0: in this process."""
    if workers <= 0 or len(urls) < 2:
        return catalogue_batches(urls, spec, batch_size, tabular, wanted)
    shards = _CatalogueShards(urls, spec, batch_size, tabular, wanted)
    return forked_loader(shards, min(workers, len(urls)))


def local_shard_urls(shards_dir: Path, manifest: dict) -> list[str]:
    """Shard paths from the manifest's shard *names*, resolved inside `shards_dir`; names
    that are not plain file names are refused, so a shards directory cannot smuggle a
    command or a path outside itself."""
    source = str(shards_dir / layout.MANIFEST)
    return [str(layout.shard_path(shards_dir, s["name"], source)) for s in manifest["shards"]]


def tabular_columns(catalog) -> list[str]:
    """The catalogue's numeric track features (float columns), in table order."""
    import polars as pl

    return [c for c, t in catalog.schema.items() if t == pl.Float32]


def _tabular_values(catalog, columns: list[str]) -> np.ndarray:
    return np.stack([catalog[c].cast(float).fill_null(np.nan).to_numpy() for c in columns], 1)


def tabular_scaling(catalog, columns: list[str]) -> dict[str, list[float]]:
    """The mean and standard deviation of each numeric feature over the catalogue a model
    is trained on: saved with the run, so an item's features (and embedding) stay the
    same after tracks are appended to the shards."""
    values = _tabular_values(catalog, columns)
    return {
        "mean": np.nanmean(values, 0).tolist(),
        "std": (np.nanstd(values, 0) + 1e-6).tolist(),
    }


def tabular_features(catalog, columns: list[str], scaling: dict[str, list[float]]) -> np.ndarray:
    """[n_items + 1, F] float32 numeric features standardised by `scaling` (row 0 =
    padding, NaN = 0)."""
    values = _tabular_values(catalog, columns)
    mean, std = np.asarray(scaling["mean"]), np.asarray(scaling["std"])
    scaled = np.nan_to_num((values - mean) / std).astype(np.float32)
    out = np.zeros((int(catalog["item_id"].max()) + 1, len(columns)), dtype=np.float32)
    out[catalog["item_id"].to_numpy()] = scaled
    return out


def artist_album_ids(catalog: pl.DataFrame, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(artist, album) index [n_items + 2] of every item id, 1-based in order of first
    appearance (0: padding, out of vocabulary, no artist, no album). Artists are told
    apart by their normalised names (case and spacing ignored), albums by normalised
    artist and album names, so two artists' albums of one title stay apart."""
    known = catalog.filter(pl.col("item_id") <= n_items).sort("item_id")

    def normal(column: str) -> pl.Expr:
        text = pl.col(column).cast(pl.Utf8).fill_null("").str.to_lowercase()
        return text.str.replace_all(r"\s+", " ").str.strip_chars()

    keys = known.select(
        "item_id",
        normal("artist").alias("artist"),
        pl.when(normal("album") != "")
        .then(normal("artist") + "\x1f" + normal("album"))
        .alias("album"),
    )
    out = np.zeros((2, ItemIds(n_items).rows_with_oov), dtype=np.int64)
    for row, column in enumerate(("artist", "album")):
        values = keys[column].fill_null("").to_list()
        index: dict[str, int] = {"": 0}
        codes = [index.setdefault(v, len(index)) for v in values]
        out[row, keys["item_id"].to_numpy()] = codes
    return out[0], out[1]
