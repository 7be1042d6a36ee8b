"""QLoRA on CPU in CI: the QLoRA tests of test_sft_hardware.py in a pytest of their own, with the
bitsandbytes that .ci/run installs into .ci/extras/bitsandbytes (kept out of the venv, where every
`import peft` would import it) on that process's path only."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ROOT / ".ci" / "extras" / "bitsandbytes"


@pytest.mark.skipif(not (EXTRAS / "bitsandbytes").is_dir(), reason="bitsandbytes is not in .ci/extras (bash .ci/run installs it)")
def test_qlora_trains_on_cpu_with_bitsandbytes():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(EXTRAS), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "tests/e2e/test_sft_hardware.py", "-k", "qlora and cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
