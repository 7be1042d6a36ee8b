"""Small tmpfs file systems, mounted in a private mount namespace (`unshare -m`) for one shell script,
so a write past their size fails for real with ENOSPC ("No space left on device") and nothing outside
the script sees them. Needs root or CAP_SYS_ADMIN: `require_tmpfs()` skips a test, with the reason, where
mounting is not permitted."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_probe: str | None = None


def _mount_problem() -> str:
    """'' when this process can mount a tmpfs in a private namespace, else why not."""
    global _probe
    if _probe is None:
        if shutil.which("unshare") is None:
            _probe = "unshare (util-linux) is not installed"
        else:
            probe = Path(f"/tmp/posttrain-tmpfs-probe-{os.getpid()}")
            probe.mkdir(exist_ok=True)
            done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                   f"mount -t tmpfs -o size=64k posttrain-test {probe}"], capture_output=True, text=True)
            probe.rmdir()
            _probe = "" if done.returncode == 0 else f"cannot mount a tmpfs in a private mount namespace: {done.stderr.strip()}"
    return _probe


def require_tmpfs() -> None:
    if _mount_problem():
        pytest.skip(_mount_problem())


def run_with_tmpfs(mounts: dict, script: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the sh `script` with a tmpfs of `size` (e.g. "512k") mounted at each existing directory of
    `mounts` {directory: size}; `$PYTHON` is this interpreter. The mounts vanish when the script ends:
    copy out what a test needs to look at afterwards."""
    lines = ["set -e"] + [f"mount -t tmpfs -o size={size} posttrain-test {shlex.quote(str(d))}" for d, size in mounts.items()]
    full_env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(lines + [script])],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
