"""Loader throughput: mirkit's item-major stream against the seed's map-style Dataset
(tools/seed_dataset.py), in (history, item content) training pairs per second, with the
page cache cold (every file evicted with posix_fadvise DONTNEED) and warm.

    .venv/bin/python -m tools.bench_loader --shards shards/demo --covers data/demo/covers

Both read the same content for the `small` preset's inputs (256 mel frames, 96 px covers,
128 lyric tokens, 50-play histories). Prints a Markdown table.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import click
import polars as pl
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from mirkit.data.content import InputSpec, local_shard_urls
from mirkit.data.plays import SplitConfig, load_plays, make_split
from mirkit.models.config import PRESETS
from mirkit.shards.manifest import load_manifest
from mirkit_train.item_major import ItemMajorStream, item_major_loader
from tools.seed_dataset import SeedStyleDataset, collate, prepare_seed_layout


def evict(paths: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (clean pages; the data stays on disk)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(paths: Iterable[Path]) -> None:
    for path in paths:
        path.read_bytes()


def pairs_per_second(batches: Iterable, pairs_per_batch: int, n_batches: int) -> float:
    """Throughput over n_batches, worker start-up included (as a training epoch sees it)."""
    started = time.perf_counter()
    for _, _ in zip(range(n_batches), batches, strict=False):
        pass
    return n_batches * pairs_per_batch / (time.perf_counter() - started)


@click.command()
@click.option("--shards", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--covers", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--workers", multiple=True, type=int, default=(1, 2), show_default=True)
@click.option("--contexts", multiple=True, type=int, default=(4, 32), show_default=True)
@click.option("--items-per-batch", type=int, default=32, show_default=True)
@click.option("--seed-batch-size", type=int, default=64, show_default=True)
@click.option("--batches", type=int, default=30, show_default=True)
def main(
    shards: Path,
    covers: Path,
    workers: tuple[int, ...],
    contexts: tuple[int, ...],
    items_per_batch: int,
    seed_batch_size: int,
    batches: int,
) -> None:
    preset = PRESETS["small"]
    manifest = load_manifest(shards)
    split = make_split(load_plays(shards, manifest["fingerprints"]["interactions"]), SplitConfig())

    n_items = int(pl.read_parquet(shards / "catalog.parquet")["item_id"].max())
    tokenizer = AutoTokenizer.from_pretrained(str(shards / "tokenizer"), local_files_only=True)
    spec = InputSpec(
        mel_frames=preset.mel_frames,
        n_mels=manifest["content_config"]["n_mels"],
        cover_size=preset.cover_size,
        max_tokens=preset.text.max_tokens,
        pad_token_id=tokenizer.pad_token_id or 0,
    )
    urls = local_shard_urls(shards, manifest)
    shard_files = [Path(u) for u in urls]
    with tempfile.TemporaryDirectory() as tmp:
        cover_files, lyrics = prepare_seed_layout(shards, covers, Path(tmp))
        seed_files = [*Path(tmp, "mel").iterdir(), *cover_files.values()]
        dataset = SeedStyleDataset(
            split,
            Path(tmp, "mel"),
            cover_files,
            lyrics,
            tokenizer,
            preset.mel_frames,
            preset.cover_size,
            preset.text.max_tokens,
            preset.max_len,
        )
        click.echo(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"shards: {shards} ({n_items} items, {len(urls)} shards, "
            f"{len(split.train_rows)} training plays)\n"
        )
        click.echo("| cache | workers | loader | pairs/s | vs seed-style |")
        click.echo("|---|---:|---|---:|---:|")
        for cache in ("cold", "warm"):
            for w in workers:
                (evict if cache == "cold" else warm)(seed_files)
                loader = DataLoader(
                    dataset,
                    batch_size=seed_batch_size,
                    shuffle=True,
                    num_workers=w,
                    collate_fn=collate,
                )
                seed_rate = pairs_per_second(iter(loader), seed_batch_size, batches)
                click.echo(f"| {cache} | {w} | seed-style Dataset | {seed_rate:.0f} | 1.0x |")
                for k in contexts:
                    (evict if cache == "cold" else warm)(shard_files)
                    stream = ItemMajorStream(
                        urls, split, n_items, spec, k, items_per_batch, preset.max_len, 8.0, 0, 0
                    )
                    rate = pairs_per_second(
                        iter(item_major_loader(stream, w)), items_per_batch * k, batches
                    )
                    click.echo(
                        f"| {cache} | {w} | mirkit item-major (K={k}, M={items_per_batch}) | "
                        f"{rate:.0f} | {rate / seed_rate:.1f}x |"
                    )


if __name__ == "__main__":
    main()
