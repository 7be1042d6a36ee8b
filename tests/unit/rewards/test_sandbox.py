"""Housekeeping of the host side of the sandbox (its security: test_sandbox_security.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from posttrain.rewards.sandbox import remove_left_over_workdirs


def test_working_directories_of_killed_trainers_are_removed_and_live_ones_kept():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited: its pid is free (reuse within the test is vanishingly unlikely)
    old = time.time() - 3600
    left_over = tempfile.mkdtemp(prefix=f"posttrain-sandbox-{dead_pid}-")
    open(os.path.join(left_over, "job.json"), "w").close()
    fresh = tempfile.mkdtemp(prefix=f"posttrain-sandbox-{dead_pid}-")  # may belong to an execution starting now
    mine = tempfile.mkdtemp(prefix=f"posttrain-sandbox-{os.getpid()}-")
    for path in (left_over, mine):
        os.utime(path, (old, old))
    try:
        removed = remove_left_over_workdirs()
        assert left_over in removed and not os.path.exists(left_over)
        assert os.path.isdir(fresh) and os.path.isdir(mine)
    finally:
        for path in (fresh, mine):
            os.rmdir(path)
