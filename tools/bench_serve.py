"""A bounded load test of `mirkit serve`: requests/s and p50/p99 latency of the
recommend endpoint from 1, 8 and 32 concurrent clients on localhost.

    .venv/bin/python tools/bench_serve.py --run runs/demo [--requests 3000] [--max-batch 64,1]

The server is started as its own process (`mirkit serve`, as a user runs it); each
client is a keep-alive HTTP/1.1 connection (asyncio streams in one client process) that
sends its next request when the last one is answered. Listeners are taken in turn
through all the run's users, so no answer repeats a recent one. Any response other than
200 counts as an error. `--max-batch 64,1` measures the server with request batching
(the default, 64) and without it (1). The table goes to stdout (markdown, for
BENCHMARKS.md), a summary per run to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirkit import log  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, max_batch: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "mirkit", "-q", "serve", "--run", str(run)]
    command += ["--port", str(port), "--max-batch", str(max_batch)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/run", timeout=2) as r:
                return process if r.status == 200 else None
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                reason = process.stderr.read().decode()
                raise SystemExit(f"mirkit serve did not start: {reason}") from None
            time.sleep(0.3)


async def client(port: int, paths: list[str], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for path in paths:
        started = time.perf_counter()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(f"{status} {path}")
    writer.close()


async def load(port: int, paths: list[str], clients: int) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    shares = [paths[c::clients] for c in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(client(port, share, latencies, errors) for share in shares))
    return latencies, errors, time.perf_counter() - started


def measure(run: Path, max_batch: int, levels: list[int], requests: int, k: int) -> list[dict]:
    """One server with `max_batch`; a row per concurrency level."""
    from mirkit.serving.recommend import Recommender

    users = sorted(Recommender(run).user_rows)
    port = free_port()
    server = start_server(run, port, max_batch)
    rows = []
    try:
        for clients in levels:
            paths = [
                f"/api/v1/users/{users[i % len(users)]}/recommendations?k={k}"
                for i in range(requests)
            ]
            asyncio.run(load(port, paths[: 4 * clients], clients))  # warm-up
            latencies, errors, seconds = asyncio.run(load(port, paths, clients))
            ms = np.asarray(latencies) * 1000
            rows.append(
                {
                    "max batch": max_batch,
                    "clients": clients,
                    "requests": len(paths),
                    "requests/s": round(len(paths) / seconds, 1),
                    "p50 ms": round(float(np.percentile(ms, 50)), 2),
                    "p99 ms": round(float(np.percentile(ms, 99)), 2),
                    "max ms": round(float(ms.max()), 2),
                    "errors": len(errors),
                }
            )
            log.summary(f"mirkit serve, max batch {max_batch}, {clients} clients", rows[-1].items())
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--requests", type=int, default=3000, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-batch", default="64,1", help="server settings (1: no batching)")
    args = parser.parse_args()
    log.configure(0)
    levels = [int(c) for c in args.clients.split(",")]
    rows = []
    for max_batch in [int(b) for b in args.max_batch.split(",")]:
        rows += measure(args.run, max_batch, levels, args.requests, args.k)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---:|" * len(rows[0]))
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
