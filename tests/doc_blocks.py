"""The runnable blocks of a Markdown document, and how the docs tests run them (tests/e2e/test_smoke_docs.py:
the README, then the guides that use its later runs; tests/e2e/test_smoke_docs_guides.py: the other guides).

A fenced block tagged `bash` or `python` is a command a reader will copy, so it is run; `text`, `yaml`,
`json` and untagged blocks are shown, not run (outputs, file layouts, templates). An HTML comment on the
line just before a fence, `<!-- docs-test: skip REASON -->`, marks a runnable block the test cannot run
here (a hub model, a GPU, minutes of measurement); the test reports it skipped with REASON.

In a shell block, the set-up steps of a fresh machine (creating and activating the virtual environment,
`bash install.sh`) are left out of `&&` chains: the test runs inside the environment CI installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")
REPO = Path(__file__).resolve().parents[1]
BLOCK_TIMEOUT = 900
# Guides that use what only the README's later commands make (runs/dpo, runs/ppo, runs/compare,
# runs/pipeline-main): they run after the README, in its file. The other guides run in a file of their
# own (so that `pytest -n 2 --dist loadfile` can put the two on different workers), on the README's
# runs they use, made by the README's own commands: README_RUNS.
WITH_README = ("compare.md", "report.md")
README_RUNS = ("sft", "rm", "pairs")
_SETUP = re.compile(r"^(python3? -m venv \S+|\. \S*\.venv/bin/activate|source \S*\.venv/bin/activate|bash install\.sh.*)$")


@dataclass
class Block:
    document: str
    line: int  # 1-based line of the opening fence
    language: str  # "bash" or "python"
    code: str
    skip: str | None  # the reason, for a block marked skip

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(path: Path, name: str | None = None) -> list[Block]:
    """Every fenced bash / python block of `path`, in order (`name` labels them; default the file name)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, language = i, fence.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{path}:{start + 1}: a code fence is never closed")
        marker = _SKIP.match(lines[start - 1]) if start else None
        if language in RUNNABLE:
            code = "\n".join(lines[start + 1:end]) + "\n"
            found.append(Block(name or path.name, start + 1, RUNNABLE[language], code, marker.group(1) if marker else None))
        i = end + 1
    return found


def without_setup(command: str) -> str:
    """`command` with a fresh machine's set-up steps taken out of its `&&` chains; "" if nothing is left."""
    kept = []
    for line in command.splitlines():
        parts = [p.strip() for p in line.split("&&")]
        rest = [p for p in parts if not _SETUP.match(p)]
        if len(rest) == len(parts):
            kept.append(line)
        elif rest:
            kept.append(" && ".join(rest))
    return "\n".join(kept) + "\n" if any(k.strip() for k in kept) else ""


def workspace_at(root: Path) -> Path:
    """A fresh directory holding what a clone holds next to the README's commands: examples/."""
    (root / "examples").symlink_to(REPO / "examples")
    return root


def _environment() -> dict:
    env = dict(os.environ, POSTTRAIN_SMOKE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # posttrain, python, torchrun
    return env


def run_code(language: str, code: str, cwd: Path) -> tuple[int, float, str]:
    """(exit code, seconds, output) of a bash or python snippet run as the docs tests run blocks."""
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
    return done.returncode, time.perf_counter() - began, done.stdout + done.stderr


def readme_documents() -> list[Path]:
    """What tests/e2e/test_smoke_docs.py runs, in order: the README, then WITH_README."""
    return [REPO / "README.md", *(REPO / "docs" / name for name in WITH_README)]


def guide_documents() -> list[Path]:
    """What tests/e2e/test_smoke_docs_guides.py runs, in name order: every other guide under docs/."""
    return [d for d in sorted((REPO / "docs").glob("*.md")) if d.name not in WITH_README]


def block_params(documents: list[Path]) -> list:
    """One pytest case per runnable block, in document order (ids like README.md:204); blocks marked
    skip are left out (they never run)."""
    return [pytest.param(block, id=block.where) for document in documents
            for block in blocks(document, str(document.relative_to(REPO))) if not block.skip]


def run_in_order(block: Block, workspace: Path, failed: dict[str, str]) -> None:
    """Run `block` in `workspace`; fails with its output tail. A block after a failed one of the same
    document is skipped (it would fail on the missing run), naming the one that failed."""
    if block.document in failed:
        pytest.skip(f"not run: {failed[block.document]} failed earlier in this document")
    code = without_setup(block.code) if block.language == "bash" else block.code
    if not code:
        return  # set-up only: done by CI's install
    rc, seconds, output = run_code(block.language, code, workspace)
    print(f"{block.where} rc={rc} {seconds:.1f}s")
    if rc != 0:
        failed[block.document] = block.where
        pytest.fail(f"{block.where} exited {rc}:\n{block.code}\n--- output (tail) ---\n{output[-4000:]}")


def readme_command(stage: str) -> str:
    """The README's command that writes runs/<stage>: its first `posttrain STAGE` line without output_dir=."""
    for block in blocks(REPO / "README.md"):
        if block.skip or block.language != "bash":
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            if line.startswith(f"posttrain {stage} ") and "output_dir=" not in line:
                return line
    raise LookupError(f"README.md has no `posttrain {stage} ...` line writing runs/{stage} (see README_RUNS in tests/doc_blocks.py)")
