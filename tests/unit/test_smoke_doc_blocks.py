"""The docs test's reading of Markdown: which blocks run, which are skipped and why, and the set-up
steps it leaves to CI."""

from __future__ import annotations

import pytest

from doc_blocks import README_RUNS, REPO, blocks, guide_documents, readme_command, readme_documents, without_setup

DOC = """# Title

```bash
posttrain sft max_steps=1
```

```text
posttrain: error: shown, not run
```

<!-- docs-test: skip needs a GPU -->
```bash
posttrain sft device=cuda
```

```python
import posttrain
```

```yaml
model: embedded
```
"""


def test_only_bash_and_python_blocks_run_and_a_marker_skips_one_with_its_reason(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    found = blocks(path)
    assert [(b.line, b.language, b.code, b.skip) for b in found] == [
        (3, "bash", "posttrain sft max_steps=1\n", None),
        (12, "bash", "posttrain sft device=cuda\n", "needs a GPU"),
        (16, "python", "import posttrain\n", None),
    ]
    assert found[0].where == "doc.md:3"


def test_an_unclosed_fence_is_an_error(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("```bash\nposttrain sft\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks(path)


@pytest.mark.parametrize("command, expected", [
    ("python3 -m venv .venv && . .venv/bin/activate && bash install.sh && posttrain pipeline main && posttrain report runs/x\n",
     "posttrain pipeline main && posttrain report runs/x\n"),
    ("bash install.sh dev\n", ""),
    ("posttrain sft && posttrain eval\n", "posttrain sft && posttrain eval\n"),
    ("posttrain a \\\n    b=1\n", "posttrain a \\\n    b=1\n"),
])
def test_set_up_steps_are_left_to_ci(command, expected):
    assert without_setup(command) == expected


def test_the_two_docs_test_files_run_every_document_once_the_readme_first():
    readme, guides = readme_documents(), guide_documents()
    assert readme[0] == REPO / "README.md" and all(d.is_file() for d in readme)
    assert sorted(readme + guides) == sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
    assert not set(readme) & set(guides)


@pytest.mark.parametrize("stage", README_RUNS)
def test_the_guides_get_the_readmes_runs_from_its_own_commands(stage):
    command = readme_command(stage)  # the line the README runs, whose run directory is runs/<stage>
    assert command.startswith(f"posttrain {stage} ") and "output_dir=" not in command
    assert any(command in block.code for block in blocks(REPO / "README.md") if not block.skip)
