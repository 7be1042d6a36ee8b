"""Ray in a network namespace of its own with only loopback up (`unshare -n`), and a PID namespace
(`-p -f --mount-proc`) so that every Ray process ends with the test's shell: nothing listens on the
machine's interfaces and nothing is left behind. Where `unshare -n` is refused (no root), `unshare -rn`
(a user namespace) is tried; without either PREFIX is None and the tests skip
(tests/e2e/test_grpo_ray.py, test_grpo_vllm.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile

from conftest import REPO

ENV = {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}


def isolation() -> list[str] | None:
    """The unshare prefix that gives a loopback-only network namespace (and its own PIDs) here, or None."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for prefix in (["unshare", "-n", "-p", "-f", "--mount-proc"], ["unshare", "-r", "-n", "-p", "-f", "--mount-proc"]):
        if subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, check=False).returncode == 0:
            return prefix
    return None


PREFIX = isolation()


def isolated(script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`script` (bash) in a fresh loopback-only network namespace; Ray's files under a short temp dir (its
    socket paths must stay under 108 bytes)."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        # Ray >= 2.52 clusters authenticate by token: a fresh one, given to the head and the learner as a
        # second node would get it (docs/ray.md), so nothing is read from or written to ~/.ray
        env = {**os.environ, **ENV, "RAY_TMPDIR": temp, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        return subprocess.run([*PREFIX, "bash", "-c", f"ip link set lo up\n{script}"], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=REPO, check=False)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
