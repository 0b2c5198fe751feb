"""Index build speed on a trained run, and top-100 retrieval over synthetic catalogues of
10 k, 100 k and 1 M items: exact (blocked matrix products) against FAISS (IVF-Flat), with
FAISS's recall@100 against exact search.

    .venv/bin/python -m tools.bench_index --run runs/demo

Synthetic catalogues: unit vectors in `--dim` dimensions drawn around 256 cluster
centres (real item embeddings are clustered; uniformly random ones make IVF look worse
than it is); 1,000 queries drawn the same way. Prints Markdown tables.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import click
import numpy as np

from mirkit import log
from mirkit.serving.index import ItemIndex, build_faiss, build_index, exact_top_k
from mirkit.serving.runs import TrainedRun


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(len(centres), size=n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def one_query_ms(search, queries: np.ndarray, repeats: int = 50) -> float:
    times = []
    for row in queries[:repeats]:
        started = time.perf_counter()
        search(row[None])
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


@click.command()
@click.option("--run", "run_path", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--sizes", multiple=True, type=int, default=(10_000, 100_000, 1_000_000))
@click.option("--dim", type=int, default=64, show_default=True)
@click.option("--queries", type=int, default=1000, show_default=True)
@click.option("--nprobe", multiple=True, type=int, default=(8, 32), show_default=True)
def main(
    run_path: Path | None,
    sizes: tuple[int, ...],
    dim: int,
    queries: int,
    nprobe: tuple[int, ...],
) -> None:
    log.configure(-1)
    click.echo(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    if run_path is not None:
        summary = build_index(TrainedRun.open(run_path))
        click.echo(
            f"index build ({run_path}): {summary['items']} items in {summary['seconds']} s = "
            f"{summary['items/s']} items/s\n"
        )
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(256, dim))
    q = clustered(queries, dim, rng, centres)
    click.echo(
        f"| items | search | build s | {queries:,} queries s | queries/s | "
        f"latency of one query (median ms) | recall@100 |"
    )
    click.echo("|---:|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        table = np.zeros((n + 1, dim), dtype=np.float32)
        table[1:] = clustered(n, dim, rng, centres)
        started = time.perf_counter()
        _, exact = exact_top_k(q, table, 100)
        seconds = time.perf_counter() - started
        latency = one_query_ms(lambda v, t=table: exact_top_k(v, t, 100), q)
        click.echo(
            f"| {n:,} | exact | - | {seconds:.2f} | {queries / seconds:,.0f} | "
            f"{latency:.2f} | 1.000 |"
        )
        index = ItemIndex(table)
        started = time.perf_counter()
        index._faiss = build_faiss(table)
        built = time.perf_counter() - started
        for probes in nprobe:
            started = time.perf_counter()
            _, ids = index.search(q, 100, backend="faiss", nprobe=probes)
            seconds = time.perf_counter() - started
            recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ids, exact, strict=True)])
            latency = one_query_ms(
                lambda v, p=probes, i=index: i.search(v, 100, backend="faiss", nprobe=p), q
            )
            click.echo(
                f"| {n:,} | FAISS IVF-Flat, nprobe {probes} | {built:.1f} | {seconds:.2f} | "
                f"{queries / seconds:,.0f} | {latency:.2f} | {recall:.3f} |"
            )


if __name__ == "__main__":
    main()
