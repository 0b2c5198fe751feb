"""`mirkit synth`: generate a built-in synthetic music corpus."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from mirkit import log
from mirkit.synth.corpus import generate_corpus
from mirkit.synth.presets import PRESETS


@click.command()
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default="tiny",
    show_default=True,
    help="Corpus size and realism (see docs/synth.md).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed, same files (byte for byte, on one platform and lock file).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write the corpus into.",
)
@click.option(
    "--audio-seconds",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Clip length; defaults to the preset's.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: all cores).",
)
def synth(
    preset: str, seed: int, out: Path, audio_seconds: float | None, workers: int | None
) -> None:
    """Write a synthetic music corpus (plays, profiles, tracks, lyrics, audio, covers, and
    the latent truth) in the real input formats that `mirkit shards build` reads."""
    chosen = PRESETS[preset]
    if audio_seconds is not None:
        chosen = replace(chosen, audio_seconds=audio_seconds)
    stats = generate_corpus(chosen, seed, out, workers)
    log.summary(f"synthetic corpus written to {out}", stats.items())
