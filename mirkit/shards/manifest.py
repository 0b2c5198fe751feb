"""The manifest of a shards directory: assembled from the plan and the shards' stats
files, written last and atomically, with fingerprints that let a trainer or an index
tell exactly what it was given."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from mirkit import __version__
from mirkit.errors import ShardsError
from mirkit.files import write_json_atomic, write_parquet_atomic
from mirkit.shards import layout
from mirkit.shards.inputs import Problem
from mirkit.shards.writer import stats_path

FORMAT = "mirkit-shards"
FORMAT_VERSION = 1
PROBLEM_SCHEMA = {
    "kind": pl.String,
    "key": pl.String,
    "modality": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "item_id": pl.Int32,
}


def problems_frame(problems: list[Problem]) -> pl.DataFrame:
    return pl.DataFrame([asdict(p) for p in problems], schema=PROBLEM_SCHEMA)


def read_problems(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.exists() else problems_frame([])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def id_map_fingerprint(catalog: pl.DataFrame) -> str:
    """Who is who: the (item id, track key) pairs. Ids are append-only, so the catalogue
    rows up to a model's n_items reproduce the fingerprint it was trained with."""
    pairs = "\n".join(
        f"{i}\t{k}" for i, k in zip(catalog["item_id"], catalog["track_key"], strict=True)
    )
    return _sha256(pairs.encode("utf-8"))


def fingerprints(
    catalog: pl.DataFrame,
    interactions: pl.DataFrame,
    shards: list[dict],
    content_config: dict,
    tokenizer: dict | None,
) -> dict[str, str]:
    """Separate fingerprints: who is who (id map), how content was made (config and
    vocabulary), the item shards' bytes, and the plays."""
    content = {
        "content_config": content_config,
        "vocab_sha256": tokenizer["vocab_sha256"] if tokenizer else None,
    }
    plays = b"".join(
        np.ascontiguousarray(interactions[c].to_numpy().astype(dtype)).tobytes()
        for c, dtype in (("user_idx", "<i4"), ("item_id", "<i4"), ("timestamp", "<i8"))
    )
    return {
        "id_map": id_map_fingerprint(catalog),
        "content_config": _sha256(json.dumps(content, sort_keys=True).encode("utf-8")),
        "item_shards": _sha256("\n".join(f"{s['name']}:{s['sha256']}" for s in shards).encode()),
        "interactions": _sha256(plays),
    }


def _shard_stats(out: Path, plan: dict) -> list[dict]:
    stats, missing = [], []
    for shard in plan["shards"]:
        tar = layout.shard_path(out, shard["name"], f"{out / layout.PLAN}")
        marker = stats_path(tar)
        if tar.exists() and marker.exists():
            stats.append(json.loads(marker.read_text(encoding="utf-8")))
        else:
            missing.append(shard["name"])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ShardsError(
            f"{len(missing)} of {len(plan['shards'])} shards in {out} are not finished "
            f"({shown}): run the build again, or the --part that owns them (shard k belongs "
            f"to part k mod n); finished shards are skipped"
        )
    return stats


def finalize(out: Path) -> dict:
    """Join a complete build: catalogue with modality flags, failures, then the manifest."""
    plan_path = out / layout.PLAN
    if not plan_path.exists():
        raise ShardsError(f"{out} has no {layout.PLAN}: it is not a shards build in progress")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    stats = _shard_stats(out, plan)
    flags = pl.DataFrame(
        [f for s in stats for f in s["items"]],
        schema={
            "item_id": pl.Int32,
            "has_audio": pl.Boolean,
            "has_lyrics": pl.Boolean,
            "has_cover": pl.Boolean,
        },
    )
    catalog = pl.read_parquet(out / layout.STAGED_CATALOG).join(flags, on="item_id", how="left")
    catalog = catalog.with_columns(pl.col("has_audio", "has_lyrics", "has_cover").fill_null(False))
    catalog = catalog.sort("item_id")
    problems = [Problem(**p) for s in stats for p in s["problems"]]
    failures = pl.concat([read_problems(out / layout.TABLE_PROBLEMS), problems_frame(problems)])
    failures = failures.sort(["kind", "item_id", "key", "modality", "reason"], nulls_last=True)
    interactions = pl.read_parquet(out / layout.INTERACTIONS)
    users = pl.read_parquet(out / layout.USERS)
    for frame, name in ((catalog, layout.CATALOG), (failures, layout.FAILURES)):
        write_parquet_atomic(frame, out / name)

    shards = [
        {
            "name": s["name"],
            "samples": s["samples"],
            "bytes": s["bytes"],
            "sha256": s["sha256"],
            "item_ids": s["item_ids"],
        }
        for s in stats
    ]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mirkit_version": __version__,
        "content_config": plan["content_config"],
        "tokenizer": plan["tokenizer"],
        "seed": plan["seed"],
        "items_per_shard": plan["items_per_shard"],
        "shards": shards,
        "totals": {
            "items": len(catalog),
            "users": len(users),
            "plays": len(interactions),
            "shards": len(shards),
            "bytes": sum(s["bytes"] for s in shards),
        },
        "modalities": {m: int(catalog[f"has_{m}"].sum()) for m in ("audio", "lyrics", "cover")},
        "failures": dict(sorted(failures.group_by("reason").len().iter_rows())),
        "imports": json.loads((out / layout.IMPORTS).read_text(encoding="utf-8")),
        "fingerprints": fingerprints(
            catalog, interactions, shards, plan["content_config"], plan["tokenizer"]
        ),
    }
    write_json_atomic(out / layout.MANIFEST, manifest)
    return manifest


def load_manifest(shards_dir: Path) -> dict:
    """The manifest of a finished build, refusing other formats with the reason."""
    path = shards_dir / layout.MANIFEST
    if not path.exists():
        raise ShardsError(
            f"no {layout.MANIFEST} in {shards_dir}: the build did not finish (run `mirkit shards "
            f"build` again to resume it, or `mirkit shards join` after a --part build) or this "
            f"is not a shards directory"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ShardsError(
            f"{shards_dir} holds format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this mirkit reads {FORMAT!r} version "
            f"{FORMAT_VERSION}: rebuild the shards with this version"
        )
    return manifest
