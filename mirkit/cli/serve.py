"""`mirkit serve`: the HTTP API and web page of a trained, indexed run."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mirkit import log
from mirkit.cli.recommend import served_run_options


@click.command()
@served_run_options
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes the server to your network.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--audio-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The audio files the shards were built from: the page plays them.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Listeners' requests that arrive together are scored as one batch of up to this "
    "many (1: one at a time).",
)
def serve(
    run_path: Path,
    shards: Path | None,
    host: str,
    port: int,
    audio_dir: Path | None,
    backend: str,
    max_batch: int,
) -> None:
    """Serve a run's recommendations: a JSON API under /api/v1 and a web page at /."""
    import torch
    import uvicorn

    from mirkit.serving.app import create_app
    from mirkit.serving.recommend import Recommender

    started = time.perf_counter()
    torch.set_num_threads(1)  # requests are batched; threads would fight over the cores
    app = create_app(Recommender(run_path, shards, backend), audio_dir, max_batch)
    service = app.state.service
    audio = f"{len(service.audio.path_of)} files" if service.audio else "none (--audio-dir)"
    log.summary(
        "serve",
        [
            ("run", run_path),
            ("page", f"http://{host}:{port}/"),
            ("API", f"http://{host}:{port}/api/v1/run"),
            ("listeners", len(service.rec.user_rows)),
            ("tracks", service.rec.index.n_items),
            ("audio", audio),
            ("seconds to load", round(time.perf_counter() - started, 2)),
            ("stop", "Ctrl-C"),
        ],
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
