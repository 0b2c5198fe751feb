"""What the page shows of a track besides its metadata: its cover and mel spectrogram,
read from the item shards, and its audio, from the files of an `--audio-dir`.

Nothing here opens a path a request names. A request gives an item id; the shard that
holds it comes from the shards' stats files (checked by `layout.shard_path`) and its
audio file from the listing of `--audio-dir` made at start-up (`index_folder`, which
drops links that lead outside the folder). A request cannot reach any other file.
"""

from __future__ import annotations

import io
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from mirkit.shards import layout
from mirkit.shards.catalog import media_key
from mirkit.shards.inputs import index_folder
from mirkit.shards.media import AUDIO_SUFFIXES
from mirkit.shards.reader import item_shards, member_extents
from mirkit.shards.writer import sample_key

AUDIO_TYPES = {
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".m4a": "audio/mp4",
}


class ShardMedia:
    """Fields of item samples read straight from the tar shards: one seek per field,
    after the shard's member table is read once (lazily, under a lock: requests run in
    several threads)."""

    def __init__(self, shards_dir: Path):
        self.shards_dir = shards_dir
        self.holder = item_shards(shards_dir)
        self._extents: dict[str, dict[str, tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self.mel_png = lru_cache(maxsize=1024)(self._mel_png)

    def field(self, item_id: int, suffix: str) -> bytes | None:
        """The bytes of `suffix` ("cover.jpg", "mel.npy", ...) of an item, or None."""
        name = self.holder.get(item_id)
        if name is None:
            return None
        path = layout.shard_path(self.shards_dir, name, "a stats file")
        with self._lock:
            if name not in self._extents:
                self._extents[name] = member_extents(path)
        extent = self._extents[name].get(f"{sample_key(item_id)}.{suffix}")
        if extent is None:
            return None
        offset, size = extent
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(size)

    def _mel_png(self, item_id: int) -> bytes | None:
        """The log-mel spectrogram as a PNG: low frequencies at the bottom, magma colours
        scaled to the clip's own range."""
        data = self.field(item_id, "mel.npy")
        if data is None:
            return None
        from matplotlib import colormaps

        mel = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        low, high = float(mel.min()), float(mel.max())
        scaled = (mel - low) / (high - low) if high > low else np.zeros_like(mel)
        pixels = (colormaps["magma"](scaled[::-1])[..., :3] * 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        return out.getvalue()


class AudioFiles:
    """The audio file of each item among the files of `folder`, matched as
    `mirkit shards build` matched them (by track id, else 'artist - title')."""

    def __init__(self, folder: Path, catalog: pl.DataFrame):
        files, _outside = index_folder(folder, AUDIO_SUFFIXES, "--audio-dir")
        self.folder = folder
        self.path_of: dict[int, Path] = {}
        for item_id, key, track_id in catalog.select("item_id", "track_key", "track_id").rows():
            found = files.get(media_key(key, track_id))
            if found is not None:
                self.path_of[int(item_id)] = found
