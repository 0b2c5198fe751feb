"""`mirkit shards verify` and `mirkit shards info`: check a shards directory against its
manifest, and describe it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mirkit import log
from mirkit.files import sha256_file
from mirkit.shards import layout
from mirkit.shards.manifest import fingerprints, load_manifest
from mirkit.shards.reader import decode_sample, read_samples


def _check_sample(decoded: dict, manifest: dict, flags: dict) -> list[str]:
    config = manifest["content_config"]
    meta, key = decoded["meta"], decoded["key"]
    found = []
    if meta["item_id"] != int(key):
        found.append(f"sample {key}: meta.json says item {meta['item_id']}")
    for modality, field in (("audio", "mel"), ("lyrics", "lyrics"), ("cover", "cover")):
        if (field in decoded) != bool(flags.get(f"has_{modality}")):
            found.append(f"sample {key}: {modality} presence differs from catalog.parquet")
    mel = decoded.get("mel")
    if mel is not None and (
        mel.dtype != np.float16 or mel.ndim != 2 or mel.shape[0] != config["n_mels"]
    ):
        found.append(
            f"sample {key}: mel is {mel.dtype} {mel.shape}, expected float16 "
            f"[{config['n_mels']}, frames]"
        )
    tokens = decoded.get("tokens")
    if tokens is not None and (tokens.dtype != np.int32 or tokens.ndim != 1):
        found.append(f"sample {key}: tokens are {tokens.dtype} {tokens.shape}")
    cover = decoded.get("cover")
    if cover is not None and cover.size != (config["image_size"], config["image_size"]):
        found.append(f"sample {key}: cover is {cover.size}")
    return found


def shard_file_problem(shards_dir: Path, shard: dict) -> str | None:
    """What is wrong with the file of one manifest shard entry (missing, or its size or
    sha256 differs from the manifest), or None."""
    path = layout.shard_path(shards_dir, shard["name"], str(shards_dir / layout.MANIFEST))
    if not path.exists():
        return f"{shard['name']}: missing"
    if path.stat().st_size != shard["bytes"] or sha256_file(path) != shard["sha256"]:
        return f"{shard['name']}: size or sha256 differs from the manifest"
    return None


def verify(shards_dir: Path) -> list[str]:
    """Every problem found (empty when the directory matches its manifest): checksums,
    sizes and counts of every shard, every sample decoded, tables and fingerprints."""
    manifest = load_manifest(shards_dir)
    catalog = pl.read_parquet(shards_dir / layout.CATALOG)
    interactions = pl.read_parquet(shards_dir / layout.INTERACTIONS)
    flags = {
        row["item_id"]: row
        for row in catalog.select("item_id", "has_audio", "has_lyrics", "has_cover").iter_rows(
            named=True
        )
    }
    problems: list[str] = []
    seen: dict[int, str] = {}
    with log.progress() as bar:
        task = bar.add_task("verifying", total=len(manifest["shards"]))
        for shard in manifest["shards"]:
            path = layout.shard_path(shards_dir, shard["name"], str(shards_dir / layout.MANIFEST))
            bar.advance(task)
            problem = shard_file_problem(shards_dir, shard)
            if problem:
                problems.append(problem)
            if not path.exists():
                continue
            try:
                samples = list(read_samples([path]))
                decoded = [decode_sample(s) for s in samples]
            except Exception as err:  # a damaged tar or sample: report, keep checking others
                problems.append(f"{shard['name']}: cannot be read ({type(err).__name__}: {err})")
                continue
            if len(samples) != shard["samples"]:
                problems.append(
                    f"{shard['name']}: {len(samples)} samples, manifest says {shard['samples']}"
                )
            for sample in decoded:
                item = int(sample["key"])
                if item in seen:
                    problems.append(f"item {item} is in {seen[item]} and {shard['name']}")
                seen[item] = shard["name"]
                problems += [
                    f"{shard['name']}: {p}"
                    for p in _check_sample(sample, manifest, flags.get(item, {}))
                ]
    missing_items = set(flags) - set(seen)
    if missing_items:
        problems.append(
            f"{len(missing_items)} catalogue items are in no shard, e.g. "
            f"{sorted(missing_items)[:5]}"
        )
    stored = fingerprints(
        catalog, interactions, manifest["shards"], manifest["content_config"], manifest["tokenizer"]
    )
    for name, value in stored.items():
        if manifest["fingerprints"][name] != value:
            problems.append(
                f"fingerprint {name} differs: the tables or shards changed after the build"
            )
    unknown = set(interactions["item_id"].unique().to_list()) - set(flags)
    if unknown:
        problems.append(f"interactions refer to {len(unknown)} items not in the catalogue")
    return problems


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def info(shards_dir: Path) -> list[tuple[str, object]]:
    """Rows describing a shards directory, for a summary table."""
    manifest = load_manifest(shards_dir)
    totals, modalities = manifest["totals"], manifest["modalities"]
    items = max(1, totals["items"])
    rows: list[tuple[str, object]] = [
        (
            "format",
            f"{manifest['format']} v{manifest['format_version']} "
            f"(mirkit {manifest['mirkit_version']})",
        ),
        ("items", totals["items"]),
        ("users", totals["users"]),
        ("plays", totals["plays"]),
        ("shards", totals["shards"]),
        ("size on disk", f"{_disk_bytes(shards_dir) / 1e6:.1f} MB"),
    ]
    rows += [(f"with {m}", f"{n} ({100 * n / items:.1f} %)") for m, n in modalities.items()]
    rows += [(f"failures: {reason}", n) for reason, n in manifest["failures"].items()]
    config = manifest["content_config"]
    rows += [
        (
            "audio",
            f"{config['sample_rate']} Hz, n_fft {config['n_fft']}, hop "
            f"{config['hop_length']}, {config['n_mels']} mels",
        ),
        ("clip policy", config["clip_policy"]),
        ("covers", f"{config['image_size']} px JPEG q{config['jpeg_quality']}"),
        ("tokenizer", (manifest["tokenizer"] or {}).get("source", "none (no lyrics)")),
    ]
    rows += [(f"fingerprint {k}", v[:16]) for k, v in manifest["fingerprints"].items()]
    return rows
