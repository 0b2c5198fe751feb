"""A picture of what the synthetic content looks like: for one track of each of several
genres, its spectrogram (decoded from the corpus file) and its cover.

    .venv/bin/python tools/synth_gallery.py data/demo docs/img/synth-gallery.png
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import matplotlib
import numpy as np
from PIL import Image

from mirkit.ffmpeg import decode_audio
from mirkit.synth.world import MOODS, World

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def log_spectrogram(wave: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)).T ** 2
    return 10 * np.log10(power[: n_fft // 4] + 1e-10)


@click.command()
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genres", default="rock,electronic,hiphop,latin,classical,jazz")
def main(corpus: Path, out: Path, genres: str) -> None:
    world = World.from_truth(json.loads((corpus / "truth.json").read_text())["world"])
    t = world.tracks
    chosen = genres.split(",")
    fig, axes = plt.subplots(
        2, len(chosen), figsize=(3 * len(chosen), 5.2), gridspec_kw={"height_ratios": [1, 1.2]}
    )
    for col, genre in enumerate(chosen):
        g = world.genres.index(genre)
        for i in np.flatnonzero(t.genre == g):
            audio = list((corpus / "audio").glob(f"{t.track_id[i]}.*"))
            cover = list((corpus / "covers").glob(f"{t.track_id[i]}.*"))
            if audio and cover:
                try:
                    wave = decode_audio(audio[0], 22050, 0.0, 5.0)
                except RuntimeError:
                    continue
                break
        axes[0, col].imshow(np.asarray(Image.open(cover[0]).convert("RGB")))
        axes[0, col].set_title(f"{genre} / {MOODS[t.mood[i]]}", fontsize=10)
        axes[1, col].imshow(
            log_spectrogram(wave),
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, len(wave) / 22050, 0, 22050 / 4 / 1000),
        )
        axes[1, col].set_xlabel("seconds")
        for ax in axes[:, col]:
            ax.tick_params(labelsize=7)
        axes[0, col].axis("off")
    axes[1, 0].set_ylabel("kHz")
    fig.suptitle("mirkit synth: covers and spectrograms (first 5 s) by genre", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=64)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
