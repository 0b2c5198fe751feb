"""`mirkit doctor`: what this machine has for mirkit, and how to fix what is missing.

Each check returns (name, status, detail, fix); status is "ok", "missing" (a required
part: the command exits non-zero) or "note" (optional, e.g. no GPU)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEXT_MODEL = "microsoft/mdeberta-v3-base"
MIN_FREE_GB = 5.0


@dataclass
class Check:
    name: str
    status: str  # ok | missing | note
    detail: str
    fix: str = ""


def check_ffmpeg() -> Check:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        line = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
        return Check("ffmpeg", "ok", line.stdout.splitlines()[0] if line.stdout else exe)
    except Exception as err:  # any failure to run it is the finding
        return Check(
            "ffmpeg",
            "missing",
            f"the ffmpeg binary does not run: {err}",
            "reinstall the environment (`make setup`); imageio-ffmpeg ships the binary",
        )


def check_torch() -> list[Check]:
    import torch
    import torch.distributed as dist

    checks = [Check("torch", "ok", f"torch {torch.__version__}, {torch.get_num_threads()} threads")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA", "ok", f"{torch.cuda.device_count()} GPU(s): {names}"))
        nccl = dist.is_available() and dist.is_nccl_available()
        checks.append(
            Check(
                "NCCL",
                "ok" if nccl else "missing",
                "available" if nccl else "not available in this torch build",
                "" if nccl else "install a CUDA build of torch (the locked one is)",
            )
        )
    else:
        checks.append(
            Check("CUDA", "note", "no GPU visible: training runs on the CPU (gloo for DDP)")
        )
    return checks


def check_text_model(name: str = DEFAULT_TEXT_MODEL) -> Check:
    """The text model of the `full` preset, from a local directory or the HF cache."""
    path = Path(name)
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(name, local_files_only=True))
        except Exception:
            path = None
    weights = [] if path is None else [*path.glob("*.safetensors"), *path.glob("*.bin")]
    if weights:
        return Check("text model", "ok", f"{name}: {path}")
    return Check(
        "text model",
        "missing",
        f"{name} is not in the Hugging Face cache or a local directory (mirkit never "
        f"downloads); the `full` preset needs it, `small` does not",
        f"where there is internet: `huggingface-cli download {name}`, then copy the cache "
        f"(~/.cache/huggingface, or $HF_HOME) here; or pass --text-model /path/to/model",
    )


def check_imagenet() -> Check:
    from mirkit.models.resnet import IMAGENET_FILE, imagenet_weights_path

    path = imagenet_weights_path()
    if path.exists():
        return Check("ImageNet weights", "ok", str(path))
    return Check(
        "ImageNet weights",
        "missing",
        f"ResNet-18 ImageNet weights are not at {path}; the `full` preset's cover encoder "
        f"needs them, `small` does not",
        f'where there is internet: python -c "import torchvision; '
        f"torchvision.models.resnet18(weights='IMAGENET1K_V1')\", then copy {IMAGENET_FILE} "
        f"to {path.parent}",
    )


def check_disk(directory: Path) -> Check:
    existing = directory
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free / 1e9
    status = "ok" if free >= MIN_FREE_GB else "missing"
    return Check(
        "free disk",
        status,
        f"{free:.1f} GB free at {existing}",
        ""
        if status == "ok"
        else f"free space or put the shards elsewhere (--out); "
        f"a demo build needs about 0.3 GB, the `large` preset about {MIN_FREE_GB:.0f} GB",
    )


def check_shards_and_run(shards: Path | None, run: Path | None) -> list[Check]:
    from mirkit.serving.runs import RunError, TrainedRun
    from mirkit.shards.manifest import ShardsError, load_manifest

    checks = []
    if shards is not None:
        try:
            manifest = load_manifest(shards)
            checks.append(
                Check(
                    "shards",
                    "ok",
                    f"{shards}: format {manifest['format_version']}, "
                    f"{len(manifest['shards'])} shards",
                )
            )
        except (ShardsError, OSError, ValueError) as err:
            checks.append(Check("shards", "missing", str(err), "build them: mirkit shards build"))
    if run is not None:
        try:
            trained = TrainedRun.open(run)
            trained.check_shards(trained.shards(shards))
            checks.append(Check("run", "ok", f"{run} can be used with {trained.shards(shards)}"))
        except (RunError, ShardsError, OSError, ValueError) as err:
            checks.append(
                Check("run", "missing", str(err), "use the shards the run was trained on")
            )
    return checks


def run_checks(
    shards: Path | None = None, run: Path | None = None, preset: str = "small"
) -> list[Check]:
    """Pretrained weights are required for the `full` preset only; for `small` their
    absence is a note."""
    weights = [check_text_model(), check_imagenet()]
    if preset != "full":
        for c in weights:
            c.status = "note" if c.status == "missing" else c.status
    checks = [check_ffmpeg(), *check_torch(), *weights]
    checks.append(check_disk(shards if shards is not None else Path.cwd()))
    return checks + check_shards_and_run(shards, run)
