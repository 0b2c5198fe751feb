"""Reading item shards back: samples as dicts of raw bytes, decoded on request."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from mirkit.shards import layout


def read_samples(urls: Iterable[str]) -> Iterator[dict[str, bytes | str]]:
    """Raw samples of tar shards, in file order: {"__key__": ..., "mel.npy": bytes, ...}.
    `urls` are local paths or webdataset URLs (e.g. `pipe:` commands from the user's own
    configuration); webdataset reads them, for training, indexing and `shards verify`."""
    import webdataset as wds

    yield from wds.tarfile_samples({"url": str(url)} for url in urls)


def decode_sample(sample: dict[str, bytes | str]) -> dict:
    """Decoded fields: meta (dict), mel (float16 array), lyrics (str), tokens (int32
    array), cover (RGB PIL image); absent modalities are absent keys."""
    out: dict = {"key": sample["__key__"], "meta": json.loads(sample["meta.json"])}
    if "mel.npy" in sample:
        out["mel"] = np.load(io.BytesIO(sample["mel.npy"]), allow_pickle=False)
    if "tokens.npy" in sample:
        out["tokens"] = np.load(io.BytesIO(sample["tokens.npy"]), allow_pickle=False)
    if "lyrics.txt" in sample:
        out["lyrics"] = sample["lyrics.txt"].decode("utf-8")
    if "cover.jpg" in sample:
        with Image.open(io.BytesIO(sample["cover.jpg"])) as image:
            image.load()
            out["cover"] = image
    return out


def item_shards(shards_dir: Path) -> dict[int, str]:
    """The name of the shard that holds each item id, from the per-shard stats files
    (the manifest keeps only each shard's id range, and items are shuffled across
    shards)."""
    holder = {}
    for stats_file in sorted((shards_dir / layout.ITEMS).glob("*.stats.json")):
        stats = json.loads(stats_file.read_text())
        holder |= {entry["item_id"]: stats["name"] for entry in stats["items"]}
    return holder


def member_extents(path: Path) -> dict[str, tuple[int, int]]:
    """{member name: (byte offset of its data, size)} of a tar shard: a sample's field can
    then be read with one seek, without reading the shard through."""
    with tarfile.open(path, "r") as tar:
        return {m.name: (m.offset_data, m.size) for m in tar if m.isfile()}
