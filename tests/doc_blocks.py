"""The runnable blocks of a Markdown document, for the docs test (tests/e2e/test_smoke_docs.py).

A fenced block tagged `bash` or `python` is a command a reader will copy, so it is run; `text`, `yaml`,
`json` and untagged blocks are shown, not run (outputs, file layouts, templates). An HTML comment on the
line just before a fence, `<!-- docs-test: skip REASON -->`, marks a runnable block the test cannot run
here (a hub model, a GPU, minutes of measurement); the test reports it skipped with REASON.

In a shell block, the set-up steps of a fresh machine (creating and activating the virtual environment,
`bash install.sh`) are left out of `&&` chains: the test runs inside the environment CI installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s+(.+?)\s*-->\s*$")
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
