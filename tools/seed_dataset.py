"""The seed project's way of loading training pairs, kept as the loader benchmark's
reference: a map-style Dataset over plays that, for every example, opens the track's mel
`.npy`, decodes and resizes the original cover, and tokenises the lyrics.

`prepare_seed_layout` writes what the seed kept on disk (one mel `.npy` per track; the
covers stay the corpus's original files, the lyrics its CSV), from a shards directory and
its corpus, so both loaders read the same content.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image
from torch.utils.data import Dataset

from mirkit.data.plays import Split

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def prepare_seed_layout(
    shards: Path, covers: Path, out: Path
) -> tuple[dict[int, Path], dict[int, str]]:
    """Writes mel/<item_id>.npy for every item with audio; returns (item id -> original
    cover file, item id -> lyrics text)."""
    (out / "mel").mkdir(parents=True, exist_ok=True)
    lyrics = {}
    for tar_path in sorted((shards / "items").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                item_id = int(member.name.split(".")[0])
                if member.name.endswith(".mel.npy"):
                    target = out / "mel" / f"{item_id}.npy"
                    if not target.exists():
                        target.write_bytes(tar.extractfile(member).read())
                elif member.name.endswith(".lyrics.txt"):
                    lyrics[item_id] = tar.extractfile(member).read().decode("utf-8")
    catalog = pl.read_parquet(shards / "catalog.parquet")
    by_stem = {p.stem.lower(): p for p in covers.iterdir()}
    cover_files = {
        int(i): by_stem[t.lower()]
        for i, t in zip(catalog["item_id"], catalog["track_id"], strict=True)
        if t.lower() in by_stem
    }
    return cover_files, lyrics


class SeedStyleDataset(Dataset):
    """One (history, item content) pair per training play, everything read per example."""

    def __init__(
        self,
        split: Split,
        mel_dir: Path,
        covers: dict[int, Path],
        lyrics: dict[int, str],
        tokenizer,
        mel_frames: int,
        cover_size: int,
        max_tokens: int,
        max_len: int,
    ):
        self.rows = np.asarray(split.train_rows)
        self.items = np.asarray(split.plays.items)
        self.split, self.mel_dir, self.covers, self.lyrics = split, mel_dir, covers, lyrics
        self.tokenizer = tokenizer
        self.mel_frames, self.cover_size, self.max_tokens, self.max_len = (
            mel_frames,
            cover_size,
            max_tokens,
            max_len,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = int(self.rows[index])
        item = int(self.items[row])
        mel = np.zeros((0, self.mel_frames), dtype=np.float32)
        path = self.mel_dir / f"{item}.npy"
        if path.exists():
            full = np.load(path)
            start = np.random.randint(0, max(1, full.shape[1] - self.mel_frames + 1))
            mel = np.zeros((full.shape[0], self.mel_frames), dtype=np.float32)
            crop = full[:, start : start + self.mel_frames]
            mel[:, : crop.shape[1]] = crop
        cover = np.zeros((3, self.cover_size, self.cover_size), dtype=np.float32)
        if item in self.covers:
            with Image.open(io.BytesIO(self.covers[item].read_bytes())) as image:
                image = image.convert("RGB").resize((self.cover_size, self.cover_size))
                pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255
            cover = (pixels - _MEAN) / _STD
        tokens = self.tokenizer(
            self.lyrics.get(item, ""), truncation=True, max_length=self.max_tokens
        )["input_ids"]
        return {
            "history": self.split.history(row, self.max_len),
            "item_id": item,
            "mel": mel,
            "cover": cover,
            "tokens": np.asarray(tokens, dtype=np.int64),
        }


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    n_mels = max(e["mel"].shape[0] for e in examples)
    mel = np.zeros((len(examples), n_mels, examples[0]["mel"].shape[1]), dtype=np.float32)
    width = max(len(e["tokens"]) for e in examples)
    tokens = np.zeros((len(examples), width), dtype=np.int64)
    for r, e in enumerate(examples):
        mel[r, : e["mel"].shape[0]] = e["mel"]
        tokens[r, : len(e["tokens"])] = e["tokens"]
    return {
        "history": torch.from_numpy(np.stack([e["history"] for e in examples])),
        "item_id": torch.tensor([e["item_id"] for e in examples]),
        "mel": torch.from_numpy(mel),
        "cover": torch.from_numpy(np.stack([e["cover"] for e in examples])),
        "tokens": torch.from_numpy(tokens),
    }
