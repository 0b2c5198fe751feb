"""`tools/reproduce_seqrec.py` on a small `user item item ...` file of its own: any file
name runs (published numbers only where the tool has them), and a run stopped by
SIGTERM says so and continues with --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "reproduce_seqrec.py"


def seqrec_file(path: Path, users: int = 60, items: int = 40) -> Path:
    """A `user item item ...` file: each user walks through neighbouring item ids."""
    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, users + 1):
        start = int(rng.integers(1, items))
        walk = [(start + 2 * step) % items + 1 for step in range(int(rng.integers(5, 12)))]
        lines.append(" ".join(map(str, [user, *walk])))
    path.write_text("\n".join(lines) + "\n")
    return path


def run_tool(*arguments: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *arguments], capture_output=True, text=True, **kwargs
    )


def test_a_file_outside_the_published_table_runs_and_prints_its_rows(tmp_path):
    data = seqrec_file(tmp_path / "Walks.txt")
    done = run_tool(str(data), "--out", str(tmp_path / "out"), "--epochs", "2", timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| Walks | mirkit")]
    assert len(rows) == 1 and "seed 0" in rows[0]
    ndcg = float(rows[0].split("|")[4])
    assert 0.0 <= ndcg <= 1.0
    assert "(published)" not in done.stdout
    assert "no published numbers for Walks" in done.stdout
    assert (tmp_path / "out" / "time-Walks.png").stat().st_size > 0


def test_sigterm_says_the_run_was_interrupted_and_resume_finishes_it(tmp_path):
    data = seqrec_file(tmp_path / "Walks.txt", users=400)
    out = tmp_path / "out"
    command = [sys.executable, str(TOOL), str(data), "--out", str(out), "--epochs", "400"]
    command += ["--patience", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("run-*/metrics.jsonl")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training did not start: {process.communicate()[1]}")
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "interrupted at step" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    run = next(out.glob("run-*"))
    stopped = json.loads((run / "config.json").read_text())["steps_per_epoch"]
    assert stopped > 0

    resumed = run_tool(*command[2:], "--epochs", "2", "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "Walks | mirkit" in resumed.stdout
