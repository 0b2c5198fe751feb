"""`mirkit shards build`: raw inputs -> item shards and tables (format v1).

Reading, planning, writing and distributing are separate steps:
1. read the inputs and assign ids (`inputs`, `catalog`);
2. plan: a seeded permutation of the items cut into shards by item count, saved in
   `.build/plan.json` (a re-run with other settings is refused instead of mixing builds);
3. write this part's unfinished shards in a process pool (`writer`);
4. when every shard has its stats file, `manifest.finalize` writes the catalogue,
   failures and, last and atomically, `manifest.json`.
`--part i/n` runs step 3 for shards i, i+n, i+2n, ...; `mirkit shards join` runs step 4.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mirkit import log
from mirkit.errors import MirkitError
from mirkit.files import write_json_atomic, write_parquet_atomic
from mirkit.shards import layout
from mirkit.shards.catalog import IdMaps, build_id_maps, media_key
from mirkit.shards.inputs import (
    InputError,
    PlayColumns,
    Problem,
    TrackColumns,
    index_folder,
    normalise,
    read_lyrics,
    read_plays,
    read_profiles,
    read_tracks,
)
from mirkit.shards.manifest import FORMAT_VERSION, finalize, problems_frame, read_problems
from mirkit.shards.media import AUDIO_SUFFIXES, COVER_SUFFIXES, ContentConfig
from mirkit.shards.text import DEFAULT_TOKENIZER, prepare_tokenizer, vocab_sha256
from mirkit.shards.writer import ItemSource, ShardTask, stats_path, write_shard

logger = logging.getLogger(__name__)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers are forked


@dataclass
class BuildInputs:
    plays: Path
    plays_format: str = "auto"
    play_columns: PlayColumns = field(default_factory=PlayColumns)
    tracks: Path | None = None
    track_columns: TrackColumns = field(default_factory=TrackColumns)
    lyrics: Path | None = None
    audio_dir: Path | None = None
    covers: Path | None = None
    profiles: Path | None = None


@dataclass
class BuildOptions:
    out: Path
    content: ContentConfig = field(default_factory=ContentConfig)
    tokenizer: str = DEFAULT_TOKENIZER
    items_per_shard: int | None = None
    seed: int = 0
    workers: int | None = None
    part: tuple[int, int] = (0, 1)
    append: bool = False


class BuildConflict(MirkitError, RuntimeError):
    """The output directory holds a build that this one must not be mixed with."""


def default_items_per_shard(n_items: int) -> int:
    """About 64 shards for small catalogues (many more than ranks x workers), at most
    1,000 items per shard for large ones, at least 8."""
    return int(min(1000, max(8, math.ceil(n_items / 64))))


def _plan_shards(item_ids: np.ndarray, per_shard: int, seed: int, first_index: int) -> list[dict]:
    order = np.random.default_rng([seed, first_index]).permutation(item_ids)
    return [
        {
            "index": first_index + k,
            "name": layout.shard_name(first_index + k),
            "item_ids": [int(i) for i in order[start : start + per_shard]],
        }
        for k, start in enumerate(range(0, len(order), per_shard))
    ]


def inputs_fingerprint(items: list[ItemSource]) -> str:
    """What a shard is built from: each item's identity, lyrics and media files (size and
    the hash of their first MiB and last 64 KiB: a different file, not only a touched
    one, changes it). Recorded in the plan, so a rebuild or resume into the same --out
    with other inputs is refused instead of reusing shards that hold other content."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.item_id}\0{item.track_key}\0{item.lyrics}\0".encode())
        for path in (item.audio, item.cover):
            digest.update(_file_sample_digest(path) if path is not None else b"-")
    return digest.hexdigest()


def _file_sample_digest(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            return f"not a file {size}".encode()
        with open(path, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(len(head), size - (1 << 16)))
            tail = f.read(1 << 16)
    except OSError as err:
        return f"unreadable {err.errno}".encode()
    return hashlib.sha256(str(size).encode() + head + tail).digest()


def _load_previous(out: Path) -> tuple[IdMaps, dict]:
    if not (out / layout.MANIFEST).exists():
        raise BuildConflict(
            f"--append needs a finished build in {out} (no {layout.MANIFEST}); "
            f"build it first without --append"
        )
    catalog = pl.read_parquet(out / layout.CATALOG)
    users = pl.read_parquet(out / layout.USERS).select("user_idx", "user_id")
    interactions = pl.read_parquet(out / layout.INTERACTIONS)
    plan = json.loads((out / layout.PLAN).read_text(encoding="utf-8"))
    return IdMaps(catalog, users, interactions, [], {}), plan


def _check_plan(out: Path, plan: dict) -> None:
    path = out / layout.PLAN
    if not path.exists():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    changed = [
        new["name"]
        for was, new in zip(old.get("shards", []), plan["shards"], strict=False)
        if was.get("item_ids") == new["item_ids"] and was.get("inputs") != new.get("inputs")
    ]
    if changed:
        raise BuildConflict(
            f"{out} holds shards built from other inputs ({', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}: the audio, lyrics, covers or tracks "
            f"differ from the build's), which a resume would reuse: use another --out, or "
            f"remove {out} and build again"
        )
    for key in plan:
        if old.get(key) != plan[key]:
            raise BuildConflict(
                f"{out} holds a build made with a different {key!r}; it cannot be resumed "
                f"with these settings. Use another --out, remove {out}, or rerun with the "
                f"original settings"
            )


def _sources(
    catalog: pl.DataFrame, inputs: BuildInputs, problems: list[Problem]
) -> dict[int, ItemSource]:
    media: dict[str, dict[str, Path]] = {}
    for modality, folder, suffixes, option in (
        ("audio", inputs.audio_dir, AUDIO_SUFFIXES, "--audio-dir"),
        ("cover", inputs.covers, COVER_SUFFIXES, "--covers"),
    ):
        if folder is not None:
            media[modality], outside = index_folder(folder, suffixes, option)
            problems += [
                Problem("file", p.name, modality, f"a link to a file outside {option}: not read")
                for p in outside
            ]
    audio, covers = media.get("audio"), media.get("cover")
    lyrics = (
        {normalise(k): v for k, v in read_lyrics(inputs.lyrics).items()} if inputs.lyrics else None
    )
    sources, matched = {}, set()
    for row in catalog.iter_rows(named=True):
        key = media_key(row["track_key"], row["track_id"])
        matched.add(key)
        sources[row["item_id"]] = ItemSource(
            item_id=row["item_id"],
            track_key=row["track_key"],
            track_id=row["track_id"],
            title=row["title"],
            artist=row["artist"],
            album=row["album"],
            audio=audio.get(key) if audio is not None else None,
            lyrics=lyrics.get(key) if lyrics is not None else None,
            cover=covers.get(key) if covers is not None else None,
        )
    for folder, files in (("audio", audio), ("cover", covers)):
        for stem, path in sorted((files or {}).items()):
            if stem not in matched:
                problems.append(Problem("file", path.name, folder, "file matches no track"))
    return sources


def _users_table(maps: IdMaps, profiles: Path | None, previous: Path | None) -> pl.DataFrame:
    users = maps.users
    if profiles is not None:
        users = users.join(read_profiles(profiles), on="user_id", how="left")
    elif previous is not None and previous.exists():
        users = users.join(pl.read_parquet(previous).drop("user_idx"), on="user_id", how="left")
    return users.sort("user_idx")


def build_shards(inputs: BuildInputs, options: BuildOptions) -> dict:
    """Run a whole build (or one part of it); returns summary statistics. One process
    at a time per part of an --out (a lock file in its staging folder)."""
    part, parts = options.part
    if not 0 <= part < parts:
        raise InputError(f"--part {part}/{parts}: expected i/n with 0 <= i < n")
    (options.out / layout.LOCKS).mkdir(parents=True, exist_ok=True)
    with _build_lock(options.out / layout.LOCKS / f"part-{part}-of-{parts}"):
        return _build(inputs, options)


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (released when the process ends, even killed);
    a build already holding it is named in the refusal."""
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            f.seek(0)
            raise BuildConflict(
                f"another build is writing {path.parents[2]} ({f.read().strip() or 'unknown'}, "
                f"lock {path.name}): wait for it to finish, or build into another --out"
            ) from err
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)  # the holder's name means nothing once released


def _build(inputs: BuildInputs, options: BuildOptions) -> dict:
    started = time.perf_counter()
    out = options.out
    part, parts = options.part
    previous, old_plan = _load_previous(out) if options.append else (None, None)
    plays = read_plays(inputs.plays, inputs.plays_format, inputs.play_columns)
    if not len(plays.frame) and not options.append:  # appending may add tracks only
        raise InputError(
            f"{inputs.plays} holds no usable plays ({plays.rows_read} rows read, "
            f"{len(plays.problems)} refused): check the file and --plays-format"
        )
    tracks = read_tracks(inputs.tracks, inputs.track_columns) if inputs.tracks else None
    maps = build_id_maps(plays, tracks, previous)
    new_ids = maps.catalog["item_id"].to_numpy()
    if previous is not None:
        new_ids = new_ids[new_ids > int(previous.catalog["item_id"].max())]

    (out / layout.ITEMS).mkdir(parents=True, exist_ok=True)
    (out / layout.STAGING).mkdir(exist_ok=True)
    problems = list(maps.problems)
    sources = _sources(maps.catalog, inputs, problems)
    tokenizer_dir = _tokenizer(inputs, options, maps, sources, old_plan)
    per_shard = (
        (old_plan or {}).get("items_per_shard")
        or options.items_per_shard
        or default_items_per_shard(len(new_ids))
    )
    shards = list((old_plan or {}).get("shards", []))
    for shard in _plan_shards(new_ids, per_shard, options.seed, len(shards)):
        shard["inputs"] = inputs_fingerprint([sources[i] for i in shard["item_ids"]])
        shards.append(shard)
    plan = {
        "format_version": FORMAT_VERSION,
        "content_config": options.content.to_dict(),
        "tokenizer": (old_plan or {}).get("tokenizer") or _tokenizer_record(options, tokenizer_dir),
        "seed": options.seed,
        "items_per_shard": per_shard,
        "shards": shards,
    }
    if options.append:
        _check_append(old_plan, plan)
    else:
        _check_plan(out, plan)
    write_json_atomic(out / layout.PLAN, plan)
    _write_tables(out, maps, inputs, problems, previous is not None)

    tasks = _shard_tasks(shards, inputs, options, sources, tokenizer_dir)
    written = _run(tasks, options.workers)
    summary = {
        "items": len(maps.catalog),
        "new items": len(new_ids),
        "users": len(maps.users),
        **{f"plays: {k}": v for k, v in maps.counts.items()},
        "shards in plan": len(shards),
        "shards written now": len(tasks),
        "shards already done": sum(s["index"] % parts == part for s in shards) - len(tasks),
        "MB written": round(sum(s["bytes"] for s in written) / 1e6, 1),
        "items/s": round(
            sum(s["samples"] for s in written) / max(1e-9, time.perf_counter() - started), 1
        ),
    }
    if parts == 1:
        manifest = finalize(out)
        summary["failures"] = sum(manifest["failures"].values())
    else:
        summary["next step"] = f"when all {parts} parts are done: mirkit shards join {out}"
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def _shard_tasks(
    shards: list[dict],
    inputs: BuildInputs,
    options: BuildOptions,
    sources: dict[int, ItemSource],
    tokenizer_dir: Path | None,
) -> list[ShardTask]:
    """The shards of the plan this part writes (`--part`) that have no stats file yet."""
    out = options.out
    part, parts = options.part
    paths = {s["index"]: layout.shard_path(out, s["name"], str(out / layout.PLAN)) for s in shards}
    todo = [
        s
        for s in shards
        if s["index"] % parts == part and not stats_path(paths[s["index"]]).exists()
    ]
    present = tuple(
        m
        for m, given in (
            ("audio", inputs.audio_dir),
            ("lyrics", inputs.lyrics),
            ("cover", inputs.covers),
        )
        if given
    )
    return [
        ShardTask(
            s["index"],
            paths[s["index"]],
            tuple(sources[i] for i in s["item_ids"]),
            options.content,
            tokenizer_dir,
            present,
        )
        for s in todo
    ]


def _tokenizer(
    inputs: BuildInputs,
    options: BuildOptions,
    maps: IdMaps,
    sources: dict[int, ItemSource],
    old_plan: dict | None,
) -> Path | None:
    """Fit or load the tokenizer once; resumes, parts and appends reuse the saved one."""
    if inputs.lyrics is None and old_plan is None:
        return None
    directory = options.out / layout.TOKENIZER
    if (directory / "tokenizer_config.json").exists():
        return directory
    texts = [s.lyrics for _, s in sorted(sources.items()) if s.lyrics and s.lyrics.strip()]
    with log.console.status(f"preparing tokenizer {options.tokenizer}"):
        prepare_tokenizer(options.tokenizer, texts, directory)
    return directory


def _tokenizer_record(options: BuildOptions, directory: Path | None) -> dict | None:
    if directory is None:
        return None
    from mirkit.shards.text import load_tokenizer

    tokenizer = load_tokenizer(str(directory))
    return {
        "source": options.tokenizer,
        "vocab_size": len(tokenizer),
        "vocab_sha256": vocab_sha256(tokenizer),
        "max_tokens": options.content.max_tokens,
    }


def _check_append(old: dict, new: dict) -> None:
    for key in ("format_version", "content_config"):
        if old[key] != new[key]:
            raise BuildConflict(
                f"--append with a different {key!r} than the existing build; "
                f"appended items must be processed like the others"
            )


def _write_tables(
    out: Path, maps: IdMaps, inputs: BuildInputs, problems: list[Problem], appending: bool
) -> None:
    users = _users_table(maps, inputs.profiles, out / layout.USERS if appending else None)
    write_parquet_atomic(users, out / layout.USERS)
    write_parquet_atomic(maps.interactions, out / layout.INTERACTIONS)
    write_parquet_atomic(maps.catalog, out / layout.STAGED_CATALOG)
    table_problems = problems_frame(problems)
    if appending:
        table_problems = pl.concat([read_problems(out / layout.TABLE_PROBLEMS), table_problems])
    write_parquet_atomic(table_problems, out / layout.TABLE_PROBLEMS)
    imports_path = out / layout.IMPORTS
    imports = json.loads(imports_path.read_text()) if appending and imports_path.exists() else []
    record = {"plays file": inputs.plays.name, "plays format": maps.plays_format, **maps.counts}
    write_json_atomic(imports_path, [*imports, record])


def _set_worker_threads() -> None:
    import torch

    torch.set_num_threads(1)


def _run(tasks: list[ShardTask], workers: int | None) -> list[dict]:
    """Write shards in a pool (one torch thread per worker) with a progress bar."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    results = []
    with log.progress() as bar:
        progress = bar.add_task("shards", total=len(tasks))
        if workers == 1:
            _set_worker_threads()
            for task in tasks:
                results.append(write_shard(task))
                bar.advance(progress)
            return results
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_set_worker_threads
        ) as pool:
            for stats in pool.map(write_shard, tasks):
                results.append(stats)
                bar.advance(progress)
    return results
