"""A run directory: what produced it, what it measured, its checkpoints.

runs/NAME/config.json      resolved options, model config, provenance
runs/NAME/metrics.jsonl    one JSON object per logged step and per validation
runs/NAME/train.log        the log
runs/NAME/checkpoints/     last.pt, best.pt (atomic writes, weights_only loads)
runs/NAME/model/           the best model (model.json + model.pt) for index/recommend
runs/NAME/curves.png       training curves
runs/NAME/failures/        rank-R.json: the error of each rank that failed (multi-rank runs)
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch

import mirkit
from mirkit.files import atomic_path, load_weights, sha256_file, write_atomic

CHECKPOINTS = "checkpoints"


def provenance(device: torch.device) -> dict:
    """Git commit, lock-file hash, library versions and the device of this run."""
    source = Path(mirkit.__file__).resolve().parents[1]
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    lock = source / "uv.lock"
    versions = {}
    for name in (
        "mirkit",
        "torch",
        "torchvision",
        "torchaudio",
        "transformers",
        "peft",
        "webdataset",
        "numpy",
        "polars",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "git_commit": commit,
        "uv_lock_sha256": sha256_file(lock) if lock.exists() else None,
        "versions": versions,
        "device": {
            "type": device.type,
            "name": name or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "python": platform.python_version(),
    }


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        (path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)

    @contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Send log records (INFO and up) to train.log while the block runs."""
        handler = logging.FileHandler(self.path / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        level = root.level
        root.setLevel(min(level, logging.INFO) if level else logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)
            handler.close()

    def write_config(self, record: dict) -> None:
        write_atomic(self.path / "config.json", json.dumps(record, indent=1).encode())

    def read_config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def log_metrics(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def record_failure(self, rank: int, error: BaseException) -> None:
        """Written by a failing rank before it exits, so the launcher can name the root
        cause rather than the other ranks' "connection closed by peer"."""
        (self.path / "failures").mkdir(exist_ok=True)
        record = {"rank": rank, "time": time.time(), "error": f"{type(error).__name__}: {error}"}
        write_atomic(self.path / "failures" / f"rank-{rank}.json", json.dumps(record).encode())

    def failures(self) -> list[dict]:
        """Recorded rank failures, earliest first."""
        files = sorted((self.path / "failures").glob("rank-*.json"))
        return sorted((json.loads(f.read_text()) for f in files), key=lambda r: r["time"])

    def clear_failures(self) -> None:
        for f in (self.path / "failures").glob("rank-*.json"):
            f.unlink()

    def checkpoint_path(self, name: str) -> Path:
        return self.path / CHECKPOINTS / f"{name}.pt"

    def save_checkpoint(self, name: str, state: dict) -> None:
        path = self.checkpoint_path(name)
        with atomic_path(path) as temporary:
            torch.save(state, temporary)

    def load_checkpoint(self, name: str) -> dict:
        return load_weights(self.checkpoint_path(name))

    def plot(self) -> Path | None:
        """Loss, temperature and validation NDCG@10 against steps."""
        rows = self.metrics()
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if "val_NDCG@10" in r]
        if not train:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
        axes[0].set_title("training loss")
        axes[1].plot([r["step"] for r in train], [r["temperature"] for r in train])
        axes[1].set_title("temperature")
        if val:
            steps = [r["step"] for r in val]
            axes[2].plot(steps, [r["val_NDCG@10"] for r in val], marker="o", label="model")
            baselines = [k for k in val[-1] if k.startswith("val_") and k.endswith("_NDCG@10")]
            for key in baselines:  # val_<baseline>_NDCG@10
                label = key[len("val_") : -len("_NDCG@10")]
                axes[2].plot(steps, [r.get(key) for r in val], ls="--", label=label)
            axes[2].legend(fontsize=7)
        axes[2].set_title("validation NDCG@10")
        for ax in axes:
            ax.set_xlabel("step")
        fig.tight_layout()
        out = self.path / "curves.png"
        fig.savefig(out, dpi=80)
        plt.close(fig)
        return out
