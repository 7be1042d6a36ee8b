"""Every command of README.md runs as written, in order, in one fresh directory; then the guides that
use its later runs (doc_blocks.WITH_README: runs/dpo, runs/ppo, runs/compare, ...). The other guides
under docs/ run in test_smoke_docs_guides.py, a file of their own so that `--dist loadfile` can put
them on the other worker.

Blocks run with POSTTRAIN_SMOKE=1, the documented way to try a command in seconds (posttrain/smoke.py
caps steps, samples, tokens and rows and prints what it capped), and with the hub offline. `examples/`
is there as in a clone. Each block is a test case (id: document:line), run in document order in the
module's directory. Which blocks run and how they are marked: tests/doc_blocks.py.
"""

from __future__ import annotations

import pytest

from doc_blocks import block_params, readme_documents, run_in_order, workspace_at


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return workspace_at(tmp_path_factory.mktemp("newcomer"))


@pytest.mark.parametrize("block", block_params(readme_documents()))
def test_block_runs_in_order(block, workspace, failed):
    run_in_order(block, workspace, failed)
