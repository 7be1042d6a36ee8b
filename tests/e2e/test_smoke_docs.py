"""Every command of README.md and docs/*.md runs as written, in order, in one fresh directory.

The README goes first (later documents use the models it trains: runs/sft/final, runs/rm/final, ...),
then each document under docs/ in name order. Blocks run with POSTTRAIN_SMOKE=1, the documented way to
try a command in seconds (posttrain/smoke.py caps steps, samples, tokens and rows and prints what it
capped), and with the hub offline. `examples/` is there as in a clone. Which blocks run and how they
are marked: tests/doc_blocks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doc_blocks import blocks, without_setup

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK_TIMEOUT = 900


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh directory holding what a clone holds next to the README's commands: examples/."""
    root = tmp_path_factory.mktemp("newcomer")
    (root / "examples").symlink_to(REPO / "examples")
    return root


def _environment() -> dict:
    env = dict(os.environ, POSTTRAIN_SMOKE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # posttrain, python, torchrun
    return env


def run_block(block, cwd: Path) -> tuple[int, float, str]:
    """(exit code, seconds, output) of one block."""
    code = without_setup(block.code) if block.language == "bash" else block.code
    if not code:
        return 0, 0.0, "(set-up only: done by CI's install)"
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if block.language == "bash" else [sys.executable, "-c", code]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    return done.returncode, time.perf_counter() - began, done.stdout + done.stderr


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_block_runs_in_order(document, workspace):
    name = str(document.relative_to(REPO))
    ran, skipped = [], []
    for block in blocks(document, name):
        if block.skip:
            skipped.append(f"{block.where} ({block.skip})")
            continue
        rc, seconds, output = run_block(block, workspace)
        ran.append(f"{block.where} rc={rc} {seconds:.1f}s")
        assert rc == 0, f"{block.where} exited {rc}:\n{block.code}\n--- output (tail) ---\n{output[-4000:]}"
    print(f"\n{name}: ran {len(ran)} block(s), skipped {len(skipped)}")
    for line in ran + [f"skipped {s}" for s in skipped]:
        print("  " + line)
