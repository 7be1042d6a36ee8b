"""The loop's fault handling across ranks and signals: a signal received by one rank stops every rank at
the same step boundary; a full disk on rank 0 is the same DiskFullError on every rank; the same signal
twice stops at once. Signals are real (`signal.raise_signal`), and so is the full disk (/dev/full,
whose writes fail with ENOSPC)."""

from __future__ import annotations

import os
import signal

import pytest

from gloo_processes import run_in_two_processes
from posttrain.errors import DiskFullError
from posttrain.train.faults import StopSignals, rank0_write


def test_the_first_signal_asks_to_stop_and_the_same_one_again_stops_at_once(capfd):
    before = signal.getsignal(signal.SIGINT)
    with StopSignals() as signals:
        assert signals.requested() == 0
        signal.raise_signal(signal.SIGINT)  # handled: no KeyboardInterrupt, the loop finishes its step
        assert signals.requested() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # Python's own handler again
    assert signal.getsignal(signal.SIGINT) is before
    assert "posttrain: SIGINT received: stopping after this step with a checkpoint (SIGINT again stops at once)" in capfd.readouterr().err


def _signal_on_rank_1(rank: int):
    with StopSignals() as signals:
        if rank == 1:
            signal.raise_signal(signal.SIGTERM)
        return signals.requested()


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_boundary():
    assert run_in_two_processes(_signal_on_rank_1) == {0: signal.SIGTERM, 1: signal.SIGTERM}


def _write_to_a_full_device(rank: int):
    def write():
        with open("/dev/full", "w") as f:
            f.write("checkpoint bytes")

    try:
        rank0_write(write, "checkpoint step-3", "/dev", "the previous checkpoint, step-2, is intact")
    except DiskFullError as exc:
        return str(exc)
    return None


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_full_disk_on_rank_0_is_the_same_error_on_every_rank():
    results = run_in_two_processes(_write_to_a_full_device)
    assert results[0] == results[1]
    assert results[0].startswith("no space left on device while writing checkpoint step-3 to /dev (")
