"""Model sizes and CPU/GPU training-step throughput of the presets.

    .venv/bin/python tools/bench_models.py            # parameter counts + small preset step
    .venv/bin/python tools/bench_models.py --preset full --device cuda --batch 64 --bf16

Each throughput measurement runs in a fresh process so that peak memory is its own.
The full preset is built with mDeBERTa-v3-base's architecture from its config
(`config:mdeberta-v3-base`, random weights) and no ImageNet file: sizes and speed are the
same as with the real weights.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace

import click
import torch

from mirkit.models.config import PRESETS
from mirkit.models.item_tower import ItemBatch
from mirkit.models.losses import info_nce
from mirkit.models.two_tower import TwoTower, parameter_counts

N_ITEMS, VOCAB = 20_000, 8000


def build(preset: str, checkpointing: bool = False) -> TwoTower:
    config = PRESETS[preset]
    if preset == "full":
        text = replace(
            config.text, model="config:mdeberta-v3-base", gradient_checkpointing=checkpointing
        )
        config = replace(config, text=text, image_weights="none")
    elif checkpointing:
        config = replace(config, text=replace(config.text, gradient_checkpointing=True))
    return TwoTower(config, N_ITEMS, VOCAB)


def fake_batch(m: int, tokens: int, device: str) -> ItemBatch:
    return ItemBatch(
        item_ids=torch.arange(1, m + 1),
        mel=torch.randn(m, 128, 431) * 10 - 40,
        mel_frames=torch.full((m,), 431),
        tokens=torch.randint(5, VOCAB, (m, tokens)),
        token_mask=torch.ones(m, tokens, dtype=torch.bool),
        cover=torch.randn(m, 3, 224, 224),
        has_cover=torch.ones(m, dtype=torch.bool),
    ).to(device)


def step_throughput(
    preset: str, batch: int, device: str, bf16: bool, checkpointing: bool, steps: int = 5
) -> dict:
    torch.manual_seed(0)
    model = build(preset, checkpointing).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    tokens = PRESETS[preset].text.max_tokens // 2
    items = fake_batch(batch, tokens, device)
    history = torch.randint(1, N_ITEMS + 1, (batch, PRESETS[preset].max_len), device=device)
    labels = torch.arange(batch, device=device)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = info_nce(
                model.users(history),
                model.items(items),
                labels,
                items.item_ids,
                items.item_ids,
                model.temperature(),
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "preset": preset,
        "device": device,
        "batch": batch,
        "bf16": bf16,
        "checkpointing": checkpointing,
        "samples/s": round(batch * steps / seconds, 1),
        "peak GiB": round(peak, 2),
        "tokens per item": tokens,
    }


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="small")
@click.option("--device", default="cpu")
@click.option("--batch", type=int, default=64)
@click.option("--bf16", is_flag=True)
@click.option("--checkpointing", is_flag=True)
@click.option("--one", is_flag=True, help="(internal) run one measurement, print JSON")
def main(preset: str, device: str, batch: int, bf16: bool, checkpointing: bool, one: bool) -> None:
    if one:
        click.echo(json.dumps(step_throughput(preset, batch, device, bf16, checkpointing)))
        return
    click.echo(
        f"machine: {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    click.echo("| preset | part | parameters | trainable |")
    click.echo("|---|---|---:|---:|")
    for name in ("small", "full"):
        model = build(name)
        counts = parameter_counts(model)
        towers = {
            "user tower": sum(v for k, v in counts.items() if k.startswith("user_")),
            "item tower": sum(v for k, v in counts.items() if k.startswith("item_")),
        }
        for part, value in towers.items():
            click.echo(f"| {name} | {part} | {value:,} | |")
        click.echo(f"| {name} | total | {counts['total']:,} | {counts['trainable']:,} |")
    click.echo("\n| preset | device | batch | bf16 | checkpointing | samples/s | peak GiB |")
    click.echo("|---|---|---:|---|---|---:|---:|")
    for flags in ([], ["--checkpointing"]) if device == "cuda" else ([],):
        args = [
            sys.executable,
            __file__,
            "--one",
            "--preset",
            preset,
            "--device",
            device,
            "--batch",
            str(batch),
            *(["--bf16"] if bf16 else []),
            *flags,
        ]
        r = json.loads(
            subprocess.run(args, capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        click.echo(
            f"| {r['preset']} | {r['device']} | {r['batch']} | {r['bf16']} | "
            f"{r['checkpointing']} | {r['samples/s']} | {r['peak GiB']} |"
        )


if __name__ == "__main__":
    main()
