"""What each stage costs as the data grows: wall time, CPU time, peak memory and disk.

Two parts, each printing a Markdown table (and the plot of `--plot`):

- `--probe PLAYS:ITEMS:USERS` (default 20000000:1000000:1000, Last.fm-1K's size): a
  plays-only log (`mirkit.synth.plays_only`) through `mirkit shards build`, 200 steps of
  the id-only trainer with in-batch negatives and the logQ correction, `mirkit index`
  and `mirkit eval --limit 1000`.
- `--worlds tiny,demo,large`: each synthetic world end to end - `mirkit synth`, shards,
  the id-only and the content training of `make demo`'s recipe, index, eval - and each
  stage's growth exponent against plays (the slope of log cost on log plays).

    .venv/bin/python tools/bench_scale.py --probe 20000000:1000000:1000 --work /tmp/scale
    .venv/bin/python tools/bench_scale.py --worlds tiny,demo,large --plot scale.png

Peak memory is the largest resident set of the stage's process tree (the kernel's
maxrss of the waited-for process: the largest single process, not the sum over loader
workers). Disk is what the stage wrote under its output folder.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from mirkit.synth.corpus import PLAYS_FILE, PROFILES_FILE

ROOT = Path(__file__).resolve().parents[1]
MIRKIT = [sys.executable, "-m", "mirkit"]


@dataclass
class Cost:
    stage: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    disk_mb: float


def measure(stage: str, command: list[str], output: Path | None, log: Path) -> Cost:
    """Run `command` (its output to `log`); fail loudly with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = log.read_text()[-3000:]
        raise click.ClickException(f"{stage} failed ({' '.join(command)}):\n{tail}")
    disk = _size(output) / 1e6 if output is not None else 0.0
    cost = Cost(stage, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, disk)
    click.echo(f"  {stage}: {wall:.0f} s, peak {cost.peak_rss_mb:.0f} MB", err=True)
    return cost


def run_stages(stages: list[tuple[str, list[str], Path | None]], logs: Path) -> list[Cost]:
    """Each (name, command, output) in turn, its output to logs/<i>.log."""
    return [measure(name, cmd, out, logs / f"{i}.log") for i, (name, cmd, out) in enumerate(stages)]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def probe(spec: str, work: Path) -> list[Cost]:
    n_plays, n_items, n_users = (int(x) for x in spec.split(":"))
    work.mkdir(parents=True, exist_ok=True)
    log, shards, run = work / "plays.parquet", work / "shards", work / "run"
    shutil.rmtree(shards, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    generate = [sys.executable, "-c", _GENERATE.format(n_plays, n_items, n_users, str(log))]
    build = [*MIRKIT, "shards", "build", "--plays", str(log), "--out", str(shards)]
    train = [*MIRKIT, "train", "--shards", str(shards), "--run", str(run), *PROBE_TRAINING]
    stages = [
        ("generate the log", generate, log),
        ("mirkit shards build", build, shards),
        ("mirkit train (200 steps)", train, run),
        ("mirkit index", [*MIRKIT, "index", "--run", str(run)], run / "index.h5"),
        ("mirkit eval --limit 1000", [*MIRKIT, "eval", "--run", str(run), "--limit", "1000"], None),
    ]
    return run_stages(stages, work)


PROBE_TRAINING = ["--modalities", "id", "--loss", "in-batch", "--epochs", "1"]
PROBE_TRAINING += ["--max-steps-per-epoch", "200", "--val-limit", "200"]
_GENERATE = (
    "from mirkit.synth.plays_only import plays_only_log; "
    "plays_only_log({}, {}, {}).write_parquet({!r})"
)


def world(preset: str, work: Path) -> list[Cost]:
    data, shards = work / preset / "data", work / preset / "shards"
    ids, content = work / preset / "run-ids", work / preset / "run"
    for path in (data, shards, ids, content):
        shutil.rmtree(path, ignore_errors=True)
    config = [*MIRKIT, "--config", f"configs/{preset}.toml"]
    build = [*config, "shards", "build", *_world_inputs(data), "--out", str(shards)]
    train = [*config, "train", "--shards", str(shards)]
    from_ids = ["--init-from", str(ids), "--freeze", "user_tower"]
    stages = [
        ("synth", [*MIRKIT, "synth", "--preset", preset, "--out", str(data)], data),
        ("shards", build, shards),
        ("train id-only", [*train, "--run", str(ids), *ids_recipe(preset)], ids),
        ("train content", [*train, "--run", str(content), *from_ids], content),
        ("index", [*MIRKIT, "index", "--run", str(content)], content / "index.h5"),
        ("eval", [*MIRKIT, "eval", "--run", str(content)], None),
    ]
    return run_stages(stages, work / preset)


def ids_recipe(preset: str) -> list[str]:
    """The id-only stage's options of `make demo PRESET=preset` (the Makefile's)."""
    make = ["make", "-s", "--no-print-directory", "ids-options", f"PRESET={preset}"]
    return subprocess.run(make, cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()


def _world_inputs(data: Path) -> list[str]:
    """The shards build inputs of a synthetic corpus (configs/demo.toml's, moved)."""
    return [
        *("--plays", str(data / PLAYS_FILE), "--tracks", str(data / "tracks.csv")),
        *("--lyrics", str(data / "lyrics.csv"), "--audio-dir", str(data / "audio")),
        *("--covers", str(data / "covers"), "--profiles", str(data / PROFILES_FILE)),
    ]


def table(rows: list[Cost], title: str) -> str:
    lines = [f"**{title}**", "", "| stage | wall s | CPU s | peak RSS MB | disk MB |"]
    lines.append("|---|---:|---:|---:|---:|")
    for c in rows:
        cells = (f"{c.wall_s:.1f}", f"{c.cpu_s:.1f}", f"{c.peak_rss_mb:.0f}", f"{c.disk_mb:.0f}")
        lines.append(f"| {c.stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def exponents(by_world: dict[str, list[Cost]], plays: dict[str, int]) -> str:
    """Each stage's slope of log wall time on log plays between the smallest and the
    largest world measured."""
    names = list(by_world)
    if len(names) < 2:
        return ""
    small, large = names[0], names[-1]
    span = math.log(plays[large] / plays[small])
    lines = [f"**Growth exponents, {small} -> {large} (wall time against plays)**", ""]
    lines += ["| stage | exponent |", "|---|---:|"]
    for a, b in zip(by_world[small], by_world[large], strict=True):
        growth = math.log(max(b.wall_s, 0.1) / max(a.wall_s, 0.1)) / span
        lines.append(f"| {a.stage} | {growth:.2f} |")
    return "\n".join(lines) + "\n"


def plot(by_world: dict[str, list[Cost]], plays: dict[str, int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = [plays[w] for w in by_world]
    for i, stage in enumerate(c.stage for c in next(iter(by_world.values()))):
        axes[0].plot(x, [by_world[w][i].wall_s for w in by_world], "o-", label=stage)
        axes[1].plot(x, [by_world[w][i].peak_rss_mb for w in by_world], "o-", label=stage)
    for ax, what in zip(axes, ("wall seconds", "peak RSS (MB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="plays", ylabel=what)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


@click.command()
@click.option("--probe", "probe_spec", default=None, help="PLAYS:ITEMS:USERS of the probe.")
@click.option("--worlds", default=None, help="Comma-separated synth presets, smallest first.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/mirkit-scale"))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None)
def main(probe_spec: str | None, worlds: str | None, work: Path, plot_path: Path | None) -> None:
    from mirkit.synth.presets import PRESETS

    if probe_spec is None and worlds is None:
        raise click.UsageError("say what to measure: --probe PLAYS:ITEMS:USERS and/or --worlds")
    if probe_spec:
        click.echo(f"probe {probe_spec}", err=True)
        click.echo(table(probe(probe_spec, work / "probe"), f"Plays-only probe {probe_spec}"))
    if worlds:
        names = worlds.split(",")
        by_world = {}
        for name in names:
            click.echo(f"world {name}", err=True)
            by_world[name] = world(name, work)
            click.echo(table(by_world[name], f"{name} ({PRESETS[name].n_plays:,} plays)"))
        plays = {n: PRESETS[n].n_plays for n in names}
        click.echo(exponents(by_world, plays))
        if plot_path:
            plot(by_world, plays, plot_path)


if __name__ == "__main__":
    main()
