"""rewards.bounded.run_bounded: calls with a deadline in daemon threads, at most `workers` at once."""

import threading
import time

from posttrain.rewards.bounded import TIMED_OUT, run_bounded


def test_a_call_past_its_deadline_is_abandoned_and_the_others_return():
    release = threading.Event()  # the hung call waits on it; set at the end so its thread ends with the test

    def hung():
        release.wait(30)
        return "late"

    def boom():
        raise ValueError("bad")

    try:
        began = time.monotonic()
        out = run_bounded({"fast": (lambda: 1, 5.0), "hung": (hung, 0.3), "boom": (boom, 5.0)}, workers=3)
        elapsed = time.monotonic() - began
    finally:
        release.set()
    assert out["fast"] == 1 and out["hung"] is TIMED_OUT
    assert isinstance(out["boom"], ValueError)  # an exception is returned, for the caller to name
    assert 0.3 <= elapsed < 5.0
    assert list(out) == ["fast", "hung", "boom"]  # in the order of the jobs


def test_each_clock_starts_when_its_call_starts_and_a_hung_call_frees_its_slot():
    """One worker: 'slow' takes 0.4 s of its 1 s, then 'next' gets its own 1 s; 'hung' is abandoned after
    0.2 s and the call queued behind it still runs."""
    release = threading.Event()
    try:
        out = run_bounded({"slow": (lambda: time.sleep(0.4) or "slow", 1.0), "next": (lambda: time.sleep(0.4) or "next", 1.0),
                           "hung": (lambda: release.wait(30), 0.2), "after": (lambda: "after", 1.0)}, workers=1)
    finally:
        release.set()
    assert out == {"slow": "slow", "next": "next", "hung": TIMED_OUT, "after": "after"}


def test_abandoned_threads_are_daemons():
    release = threading.Event()
    try:
        run_bounded({"hung": (lambda: release.wait(30), 0.05)}, workers=1)
        hung = [t for t in threading.enumerate() if t.name == "posttrain-reward-hung"]
        assert hung and all(t.daemon for t in hung)  # they never hold up the process's exit
    finally:
        release.set()
