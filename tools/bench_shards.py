"""Benchmark `mirkit shards build` on a corpus against its decode floor and a seed-style
layout (one mel .npy and one resized cover file per track, lyrics left raw).

    .venv/bin/python tools/bench_shards.py --config configs/demo.toml --workers 1 --workers 2

Prints a Markdown table; every run writes into a fresh temporary directory.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
import numpy as np
import polars as pl

from mirkit.config import read_toml
from mirkit.ffmpeg import AudioDecodeError, decode_audio
from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit.shards.inputs import index_folder
from mirkit.shards.media import (
    AUDIO_SUFFIXES,
    COVER_SUFFIXES,
    ContentConfig,
    ContentError,
    audio_clip,
    cover_jpeg,
    log_mel,
)

CONFIG = ContentConfig()


def _decode_only(path: Path) -> int:
    """The floor: the same ffmpeg call the build makes, nothing else."""
    try:
        return len(
            decode_audio(path, CONFIG.sample_rate, 0.0, CONFIG.clip_offset_s + CONFIG.clip_seconds)
        )
    except AudioDecodeError:
        return 0


def _seed_style(job: tuple[Path | None, Path | None, Path]) -> int:
    """What the seed's data layout costs: one mel .npy and one cover JPEG per track."""
    audio, cover, out = job
    written = 0
    if audio is not None:
        try:
            wave, _ = audio_clip(audio, CONFIG)
            path = out / f"{audio.stem}.npy"
            np.save(path, log_mel(wave, CONFIG))
            written += path.stat().st_size
        except (AudioDecodeError, ContentError):
            pass
    if cover is not None:
        try:
            path = out / f"{cover.stem}.jpg"
            path.write_bytes(cover_jpeg(cover, CONFIG))
            written += path.stat().st_size
        except ContentError:
            pass
    return written


def _pool_map(function, jobs: list, workers: int) -> tuple[list, float]:
    started = time.perf_counter()
    if workers == 1:
        results = [function(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(function, jobs, chunksize=16))
    return results, time.perf_counter() - started


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A config with a [shards.build] section (e.g. configs/demo.toml).",
)
@click.option("--workers", multiple=True, type=int, default=(1, 2), show_default=True)
def main(config_path: Path, workers: tuple[int, ...]) -> None:
    section = read_toml(config_path)["shards"]["build"]
    inputs = BuildInputs(
        plays=Path(section["plays"]),
        tracks=Path(section["tracks"]),
        lyrics=Path(section["lyrics"]),
        audio_dir=Path(section["audio-dir"]),
        covers=Path(section["covers"]),
        profiles=Path(section["profiles"]),
    )
    tracks = pl.read_csv(inputs.tracks, infer_schema=False)["track_id"].to_list()
    audio, _ = index_folder(inputs.audio_dir, AUDIO_SUFFIXES, "--audio-dir")
    covers, _ = index_folder(inputs.covers, COVER_SUFFIXES, "--covers")
    n = len(tracks)
    click.echo(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"corpus: {inputs.tracks.parent} ({n} tracks)\n"
    )
    click.echo("| workers | step | seconds | items/s | MB on disk | ratio to decode floor |")
    click.echo("|---:|---|---:|---:|---:|---:|")
    for w in workers:
        audio_jobs = [audio[t.lower()] for t in tracks if t.lower() in audio]
        _, floor = _pool_map(_decode_only, audio_jobs, w)
        click.echo(
            f"| {w} | decode floor (ffmpeg only) | {floor:.1f} | {n / floor:.1f} | - | 1.00 |"
        )
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            build_shards(
                inputs,
                BuildOptions(out=Path(tmp) / "shards", workers=w, tokenizer=section["tokenizer"]),
            )
            seconds = time.perf_counter() - started
            size = _dir_bytes(Path(tmp) / "shards") / 1e6
        click.echo(
            f"| {w} | mirkit shards build | {seconds:.1f} | {n / seconds:.1f} | "
            f"{size:.0f} | {seconds / floor:.2f} |"
        )
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [(audio.get(t.lower()), covers.get(t.lower()), Path(tmp)) for t in tracks]
            written, seconds = _pool_map(_seed_style, jobs, w)
        click.echo(
            f"| {w} | seed-style files (.npy + .jpg per track) | {seconds:.1f} | "
            f"{n / seconds:.1f} | {sum(written) / 1e6:.0f} | {seconds / floor:.2f} |"
        )


if __name__ == "__main__":
    main()
