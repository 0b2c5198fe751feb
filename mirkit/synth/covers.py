"""Album covers whose palette follows genre (hue) and mood (saturation, value) and whose
motif follows the artist, with per-album placement and speckle noise."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COVER_SIZE = 300


@dataclass(frozen=True)
class CoverSpec:
    hue: float  # 0..1, genre hue plus the artist's offset
    saturation: float
    value: float
    motif: str
    seed: int  # the album's seed: all tracks of an album share a cover


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def render_cover(spec: CoverSpec) -> Image.Image:
    rng = np.random.default_rng(spec.seed)
    size = COVER_SIZE
    top = np.array(_rgb(spec.hue, spec.saturation, spec.value), dtype=float)
    bottom = np.array(_rgb(spec.hue + 0.08, spec.saturation * 0.8, spec.value * 0.55), dtype=float)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp) * np.ones((1, size, 1))
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    accent = _rgb(spec.hue + 0.5, spec.saturation, min(1.0, spec.value + 0.3))
    count = int(rng.integers(3, 9))
    for _ in range(count):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(15, 70))
        box = (int(x - r), int(y - r), int(x + r), int(y + r))
        if spec.motif == "circles":
            draw.ellipse(box, fill=accent)
        elif spec.motif == "rings":
            draw.ellipse(box, outline=accent, width=6)
        elif spec.motif == "triangles":
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=accent)
        elif spec.motif == "stripes":
            draw.rectangle((0, int(y), size, int(y + r // 3)), fill=accent)
        else:  # grid
            step = max(10, r // 2)
            for gx in range(0, size, step * 3):
                draw.line((gx, 0, gx, size), fill=accent, width=2)
            break
    noise = rng.integers(0, size, (400, 2))
    for x, y in noise:
        image.putpixel((int(x), int(y)), tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image
