"""Writing one item shard: the worker side of `mirkit shards build`.

A shard is written under a temporary name and renamed when complete; then a small stats
file (`items-NNNNNN.stats.json`) is written the same way. The stats file is the shard's
"done" marker and carries its checksum, its items' modality flags and its failures, so a
re-run skips finished shards and the final manifest is assembled from stats files alone.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import webdataset as wds

from mirkit.ffmpeg import AudioDecodeError
from mirkit.files import atomic_path, sha256_file, write_json_atomic
from mirkit.shards.inputs import Problem
from mirkit.shards.media import ContentConfig, ContentError, audio_clip, cover_jpeg, log_mel
from mirkit.shards.text import saved_tokenizer, token_ids

KEY_DIGITS = 9
TAR_MTIME = 0.0  # fixed tar member times: same inputs, same bytes


@dataclass(frozen=True)
class ItemSource:
    """Where one item's content comes from."""

    item_id: int
    track_key: str
    track_id: str
    title: str
    artist: str
    album: str
    audio: Path | None
    lyrics: str | None
    cover: Path | None


@dataclass(frozen=True)
class ShardTask:
    index: int
    path: Path
    items: tuple[ItemSource, ...]
    config: ContentConfig
    tokenizer_dir: Path | None
    inputs: tuple[str, ...]  # modalities whose input was given: a missing file is a failure


def sample_key(item_id: int) -> str:
    return f"{item_id:0{KEY_DIGITS}d}"


def stats_path(shard: Path) -> Path:
    return shard.with_name(shard.name.removesuffix(".tar") + ".stats.json")


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _encode_item(item: ItemSource, task: ShardTask) -> tuple[dict, dict, list[Problem]]:
    """The webdataset sample of one item, its modality flags, and what failed."""
    config = task.config
    sample: dict[str, bytes | str] = {"__key__": sample_key(item.item_id)}
    problems: list[Problem] = []
    window = None

    def failed(modality: str, reason: str, detail: str = "") -> None:
        problems.append(Problem("item", item.track_key, modality, reason, detail, item.item_id))

    if item.audio is not None:
        try:
            wave, window = audio_clip(item.audio, config)
            sample["mel.npy"] = npy_bytes(log_mel(wave, config))
        except (AudioDecodeError, ContentError) as err:  # no local paths in the outputs
            failed(
                "audio",
                "audio could not be decoded",
                str(err).replace(str(item.audio), item.audio.name),
            )
    elif "audio" in task.inputs:
        failed("audio", "no audio file")
    if item.lyrics is not None:
        if item.lyrics.strip():
            sample["lyrics.txt"] = item.lyrics
            if task.tokenizer_dir is not None:
                ids = token_ids(
                    saved_tokenizer(str(task.tokenizer_dir)), item.lyrics, config.max_tokens
                )
                sample["tokens.npy"] = npy_bytes(ids)
        else:
            failed("lyrics", "lyrics empty or whitespace only")
    if item.cover is not None:
        try:
            sample["cover.jpg"] = cover_jpeg(item.cover, config)
        except ContentError as err:
            failed(
                "cover",
                "cover could not be decoded",
                str(err).replace(str(item.cover), item.cover.name),
            )
    elif "cover" in task.inputs:
        failed("cover", "no cover file")
    flags = {
        "item_id": item.item_id,
        "has_audio": "mel.npy" in sample,
        "has_lyrics": "lyrics.txt" in sample,
        "has_cover": "cover.jpg" in sample,
    }
    meta = {
        "item_id": item.item_id,
        "track_key": item.track_key,
        "track_id": item.track_id,
        "title": item.title,
        "artist": item.artist,
        "album": item.album,
        "audio_file": item.audio.name if item.audio else None,
        "audio_window_s": list(window) if window else None,
        **{k: v for k, v in flags.items() if k != "item_id"},
    }
    sample["meta.json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    return sample, flags, problems


def write_shard(task: ShardTask) -> dict:
    """Write one shard and its stats file; returns the stats."""
    flags, problems = [], []
    with atomic_path(task.path) as temporary, open(temporary, "wb") as stream:
        writer = wds.TarWriter(
            stream, user="mirkit", group="mirkit", mtime=TAR_MTIME, encoder=False
        )
        for item in task.items:
            sample, item_flags, item_problems = _encode_item(item, task)
            writer.write(
                {
                    k: v.encode("utf-8") if isinstance(v, str) and k != "__key__" else v
                    for k, v in sample.items()
                }
            )
            flags.append(item_flags)
            problems += item_problems
        writer.close()
        stream.flush()
        os.fsync(stream.fileno())
    ids = [item.item_id for item in task.items]
    stats = {
        "name": task.path.name,
        "samples": len(task.items),
        "bytes": task.path.stat().st_size,
        "sha256": sha256_file(task.path),
        "item_ids": [min(ids), max(ids)],
        "items": flags,
        "problems": [asdict(p) for p in problems],
    }
    write_json_atomic(stats_path(task.path), stats)
    return stats
