"""`mirkit shards build|join|verify|info`: the offline preprocessing."""

from __future__ import annotations

from pathlib import Path

import click

from mirkit import log
from mirkit.shards.build import BuildInputs, BuildOptions, build_shards
from mirkit.shards.inputs import PLAY_FORMATS, PlayColumns, TrackColumns
from mirkit.shards.manifest import finalize
from mirkit.shards.media import ContentConfig
from mirkit.shards.text import DEFAULT_TOKENIZER
from mirkit.shards.verify import info, verify

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)
defaults = ContentConfig()


def parse_part(_ctx, _param, value: str) -> tuple[int, int]:
    try:
        part, parts = (int(x) for x in value.split("/"))
    except ValueError as err:
        raise click.BadParameter(f"{value!r}: expected i/n, e.g. 0/4") from err
    if not 0 <= part < parts:
        raise click.BadParameter(f"{value!r}: expected 0 <= i < n")
    return part, parts


@click.group()
def shards() -> None:
    """Build, join, verify and describe WebDataset shards (format v1)."""


@shards.command()
@click.option(
    "--plays",
    type=FILE,
    required=True,
    help="Play log: Last.fm-1K TSV, CSV/Parquet table, or `user item item ...` text.",
)
@click.option("--plays-format", type=click.Choice(PLAY_FORMATS), default="auto", show_default=True)
@click.option("--play-user-col", default="user_id", show_default=True)
@click.option("--play-track-col", default="track_id", show_default=True)
@click.option(
    "--play-time-col", default="timestamp", show_default=True, help="Epoch seconds or ISO-8601."
)
@click.option("--play-artist-col", default="artist_name", show_default=True)
@click.option("--play-title-col", default="track_name", show_default=True)
@click.option("--tracks", type=FILE, help="Catalogue table (CSV/TSV/Parquet); optional.")
@click.option("--track-id-col", default="track_id", show_default=True)
@click.option("--track-title-col", default="track_name", show_default=True)
@click.option("--track-artist-col", default="artist_name", show_default=True)
@click.option("--track-album-col", default="album_name", show_default=True)
@click.option("--lyrics", type=FILE, help="CSV with track_id, lyrics; optional.")
@click.option("--audio-dir", type=FOLDER, help="Audio files named by track id; optional.")
@click.option("--covers", type=FOLDER, help="JPEG/PNG covers named by track id; optional.")
@click.option("--profiles", type=FILE, help="User profiles (Last.fm-1K TSV or a table).")
@click.option("--out", type=FOLDER, required=True, help="The shards directory.")
@click.option(
    "--tokenizer",
    default=DEFAULT_TOKENIZER,
    show_default=True,
    help="HF tokenizer (local path or cached hub name), or train:VOCAB to fit one.",
)
@click.option(
    "--max-tokens", type=click.IntRange(min=8), default=defaults.max_tokens, show_default=True
)
@click.option(
    "--sample-rate", type=click.IntRange(min=8000), default=defaults.sample_rate, show_default=True
)
@click.option("--n-fft", type=click.IntRange(min=64), default=defaults.n_fft, show_default=True)
@click.option(
    "--hop-length", type=click.IntRange(min=16), default=defaults.hop_length, show_default=True
)
@click.option("--n-mels", type=click.IntRange(min=8), default=defaults.n_mels, show_default=True)
@click.option(
    "--clip-offset",
    type=click.FloatRange(min=0),
    default=defaults.clip_offset_s,
    show_default=True,
    help="Seconds into the track where the clip starts.",
)
@click.option(
    "--clip-seconds", type=click.FloatRange(min=1), default=defaults.clip_seconds, show_default=True
)
@click.option(
    "--image-size", type=click.IntRange(min=16), default=defaults.image_size, show_default=True
)
@click.option(
    "--items-per-shard",
    type=click.IntRange(min=1),
    default=None,
    help="Default: about 64 shards, between 8 and 1,000 items each.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Item order across shards.")
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores)."
)
@click.option(
    "--part",
    default="0/1",
    show_default=True,
    callback=parse_part,
    help="Build part i of n (e.g. one SLURM array task each), then `shards join`.",
)
@click.option(
    "--append", is_flag=True, help="Add new tracks (new ids) and plays to a finished build."
)
def build(**o) -> None:
    """Turn raw music data into item shards, tables and a manifest."""
    inputs = BuildInputs(
        plays=o["plays"],
        plays_format=o["plays_format"],
        play_columns=PlayColumns(
            o["play_user_col"],
            o["play_track_col"],
            o["play_time_col"],
            o["play_artist_col"],
            o["play_title_col"],
        ),
        tracks=o["tracks"],
        track_columns=TrackColumns(
            o["track_id_col"], o["track_title_col"], o["track_artist_col"], o["track_album_col"]
        ),
        lyrics=o["lyrics"],
        audio_dir=o["audio_dir"],
        covers=o["covers"],
        profiles=o["profiles"],
    )
    content = ContentConfig(
        sample_rate=o["sample_rate"],
        n_fft=o["n_fft"],
        hop_length=o["hop_length"],
        n_mels=o["n_mels"],
        clip_offset_s=o["clip_offset"],
        clip_seconds=o["clip_seconds"],
        image_size=o["image_size"],
        max_tokens=o["max_tokens"],
    )
    options = BuildOptions(
        out=o["out"],
        content=content,
        tokenizer=o["tokenizer"],
        items_per_shard=o["items_per_shard"],
        seed=o["seed"],
        workers=o["workers"],
        part=o["part"],
        append=o["append"],
    )
    summary = build_shards(inputs, options)
    log.summary(f"shards in {o['out']}", summary.items())


@shards.command()
@click.argument("shards_dir", type=FOLDER)
def join(shards_dir: Path) -> None:
    """Join the parts of a --part build: catalogue, failures, manifest."""
    manifest = finalize(shards_dir)
    log.summary(f"joined {shards_dir}", manifest["totals"].items())


@shards.command(name="verify")
@click.argument("shards_dir", type=FOLDER)
def verify_command(shards_dir: Path) -> None:
    """Recompute checksums and counts and decode every sample; non-zero exit on mismatch."""
    problems = verify(shards_dir)
    for problem in problems:
        click.echo(f"MISMATCH {problem}", err=True)
    if problems:
        raise click.ClickException(
            f"{len(problems)} problems in {shards_dir}; rebuild the "
            f"affected shards (delete them and their .stats.json, then "
            f"rerun the build)"
        )
    click.echo(f"{shards_dir}: OK")


@shards.command(name="info")
@click.argument("shards_dir", type=FOLDER)
def info_command(shards_dir: Path) -> None:
    """Items, users, plays, modality coverage, failures, size and config."""
    rows = info(shards_dir)
    for key, value in rows:
        click.echo(f"{key:32s} {value}")
