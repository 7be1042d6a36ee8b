"""Calls with a deadline: the reward functions of an online run under `reward_timeout`.

Each job runs in a thread of its own, at most `workers` at once, and its clock starts when its thread
starts. A job still running `seconds` after it started is abandoned: its result is `TIMED_OUT`, and
its slot goes to the next job. Python cannot kill a thread, so an abandoned call keeps running in
its thread until it returns (its result is then dropped); the thread is a daemon thread, so it never
holds up the process's exit. What such a call holds (a model, a lock, a child process) stays held
until then; rewards that run subprocesses (`code_tests`, `math_accuracy`'s verifier) bound those with
their own timeouts and kill what overruns. The waiting thread needs the GIL to notice a deadline: a
call stuck inside one C function that never releases it (a catastrophic regular expression) holds up
the whole process until it returns; only a subprocess can bound that.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Hashable


class _TimedOut:
    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()  # the result of a call that did not return in time


def run_bounded(jobs: dict[Hashable, tuple[Callable[[], object], float]], workers: int) -> dict[Hashable, object]:
    """Each job's return value (`jobs`: key -> (call, seconds)), or TIMED_OUT for a call that had not
    returned `seconds` after it started; at most `workers` calls run at once. A call that raises
    returns its exception (wrap the call if it should be reported differently)."""
    done: queue.SimpleQueue = queue.SimpleQueue()  # this call's own: late results of abandoned jobs land here unread
    pending = list(jobs.items())
    deadlines: dict[Hashable, float] = {}
    results: dict[Hashable, object] = {}

    def run(key, call):
        try:
            value = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which names the function
            value = exc
        done.put((key, value))

    while pending or deadlines:
        while pending and len(deadlines) < workers:
            key, (call, seconds) = pending.pop(0)
            deadlines[key] = time.monotonic() + seconds
            threading.Thread(target=run, args=(key, call), daemon=True, name=f"posttrain-reward-{key}").start()
        try:
            key, value = done.get(timeout=max(0.0, min(deadlines.values()) - time.monotonic()))
            if key in deadlines:
                del deadlines[key]
                results[key] = value
        except queue.Empty:
            now = time.monotonic()
            for key in [k for k, t in deadlines.items() if t <= now]:
                del deadlines[key]
                results[key] = TIMED_OUT
    return {key: results[key] for key in jobs}
