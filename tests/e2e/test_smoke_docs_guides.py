"""Every command of the guides under docs/ runs as written, in order (by name), in one fresh directory
(but those in doc_blocks.WITH_README, which run after the README in test_smoke_docs.py).

The guides use some of the README's runs (runs/sft/final, runs/rm/final, runs/pairs/final:
doc_blocks.README_RUNS); the directory gets them from the README's own commands first, so this file
needs nothing from the README's test and `--dist loadfile` can run the two on different workers.
Same conditions as test_smoke_docs.py: POSTTRAIN_SMOKE=1, the hub offline, `examples/` as in a clone.
"""

from __future__ import annotations

import pytest

from doc_blocks import README_RUNS, block_params, guide_documents, readme_command, run_code, run_in_order, workspace_at


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = workspace_at(tmp_path_factory.mktemp("newcomer-guides"))
    for stage in README_RUNS:
        command = readme_command(stage)
        rc, _, output = run_code("bash", command, root)
        assert rc == 0, f"the README's command for runs/{stage} exited {rc}:\n{command}\n{output[-4000:]}"
    return root


@pytest.mark.parametrize("block", block_params(guide_documents()))
def test_block_runs_in_order(block, workspace, failed):
    run_in_order(block, workspace, failed)
