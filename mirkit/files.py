"""Writing files so that a reader never sees half of one, and fingerprinting them.

Every file mirkit writes (shards, tables, manifests, checkpoints, indexes, run records)
goes through `atomic_path`: it is written under a temporary name beside its final one
and renamed when complete, so a crash or a stop signal leaves the old file or the new
one, never a torn mix, and no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mirkit.errors import UnreadableFile


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields the temporary path to write; renamed to `path` when the block ends
    normally, removed when it raises."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_json_atomic(path: Path, value: object) -> None:
    """Indented JSON with sorted keys (stable diffs between runs)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1)
    write_atomic(path, text.encode("utf-8"))


def write_parquet_atomic(frame, path: Path) -> None:
    """A polars DataFrame, without column statistics (smaller; mirkit never reads them)."""
    with atomic_path(path) as temporary:
        frame.write_parquet(temporary, statistics=False)


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` must not be opened as an input file (it is missing, or a FIFO, device,
    socket or directory, directly or through a link: reading one can block forever), or
    None for a regular file."""
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a device is a device
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return None if stat.S_ISREG(mode) else "is not a regular file (a FIFO, device or folder)"


def load_weights(path: Path, map_location="cpu") -> dict:
    """A PyTorch weights or checkpoint file, tensors only (`weights_only`: loading never
    runs code from the file); a file that is not one is an `UnreadableFile` naming it."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise UnreadableFile(
            f"{path} is not a weights file mirkit can read ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}): it is truncated, damaged or from another "
            f"program; restore it, or train again"
        ) from err


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
