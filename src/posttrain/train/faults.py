"""What the loop does when a run meets trouble its config did not cause.

- **A non-finite loss or gradient** (NaN, inf): the optimizer step is skipped (weights, optimizer
  state and the learning-rate schedule stay as they were), the step is counted (`nonfinite`,
  `nonfinite_steps` in metrics.jsonl) and a warning names it; after `max_nonfinite_steps` such steps
  in a row the run stops with a `NonFiniteError` (exit 2), writing no checkpoint and no final/.
- **A full disk** (ENOSPC, EDQUOT, EFBIG) while writing a checkpoint, final/ or metrics.jsonl: the
  partial write is removed, the previous checkpoint is left whole, and a `DiskFullError` (exit 2)
  names the directory and the space free there.
- **SIGTERM / SIGINT**: the step in progress finishes, a checkpoint is saved, and `Interrupted` ends
  the run (exit 128 + the signal: 143, 130); `resume=true` then ends where an uninterrupted run ends.
  The same signal a second time stops at once (the handler that was there before runs), except under
  torchrun, which forwards the terminal's Ctrl-C that its workers got already.

Every decision is the same on every rank: the loss is all-reduced before it is checked, the gradient
norm is the global one, a signal counts when any rank received it, and a failed write is broadcast
from rank 0, so all ranks skip, stop and raise together.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
from pathlib import Path

import posttrain.ranks as ranks
from posttrain.errors import DiskFullError, NonFiniteError

# ------------------------------------------------------------------------- non-finite losses


class NonFiniteSteps:
    """Optimizer steps skipped for a non-finite loss or gradient: in all (`total`) and in a row."""

    def __init__(self, limit: int, state: dict | None = None):
        self.limit = limit
        self.total = (state or {}).get("total", 0)
        self.in_a_row = (state or {}).get("in_a_row", 0)

    def update(self, stepped: bool) -> None:
        self.total += not stepped
        self.in_a_row = 0 if stepped else self.in_a_row + 1

    @property
    def exhausted(self) -> bool:
        """True when the run must stop: `limit` (> 0) skipped steps in a row."""
        return self.limit > 0 and self.in_a_row >= self.limit

    def state_dict(self) -> dict:
        return {"total": self.total, "in_a_row": self.in_a_row}

    def warning(self, step: int, metrics: dict) -> str:
        stop = f"the run stops at {self.limit} in a row" if self.limit > 0 else "max_nonfinite_steps=0 never stops"
        return (f"posttrain: warning: step {step}: {_values(metrics)}, not finite; the step was skipped "
                f"(no update; {self.in_a_row} in a row, {self.total} in all; {stop})")

    def error(self, step: int, total_steps: int, metrics: dict, checkpoint: Path | None) -> NonFiniteError:
        kept = (f"{checkpoint.parent.name}/{checkpoint.name} is the last checkpoint" if checkpoint is not None
                else "no checkpoint was saved")
        return NonFiniteError(
            f"training stopped at step {step} of {total_steps}: the loss or gradient was not finite for "
            f"{self.in_a_row} steps in a row (max_nonfinite_steps={self.limit}; last: {_values(metrics)}), and none of "
            f"them updated the weights; {kept} and no final/ was written. Lower learning_rate, add warmup_steps, keep "
            "max_grad_norm > 0, use bf16 rather than fp16, or check the data, then start over with overwrite_output_dir=true"
        )


def _values(metrics: dict) -> str:
    return f"loss {metrics.get('loss', float('nan')):.4g}, grad_norm {metrics.get('grad_norm', float('nan')):.4g}"


# ---------------------------------------------------------------------------------- full disk

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_errno(exc: BaseException | None) -> int | None:
    """ENOSPC / EDQUOT / EFBIG when `exc`, or an exception it was raised from or while handling, reports
    one: an OSError's errno, or the text of a C++ or Rust writer's error (safetensors: "No space left on
    device (os error 28)"); else None. (torch.save's OSError surfaces as the RuntimeError its zip writer
    raises while closing.)"""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc.errno
        if isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "SafetensorError":
            code = next((code for code in DISK_FULL_ERRNOS if os.strerror(code) in str(exc)), None)
            if code is not None:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def free_space(path: str | Path) -> str:
    """The space free on the file system that holds `path` (or its nearest existing parent), readable."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    free = float(shutil.disk_usage(path).free)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    raise AssertionError("unreachable")


def disk_full_message(code: int, what: str, where: Path, kept: str) -> str:
    return (f"{os.strerror(code).lower()} while writing {what} to {where} ({free_space(where)} free there); {kept}. "
            "Free some space or point output_dir at a larger disk, then run the same command with resume=true")


def rank0_write(write, what: str, where: Path, kept: str) -> None:
    """Collective: rank 0 calls `write()`; when it fails for lack of space, every rank raises the same
    DiskFullError (any other error is raised on rank 0, which torchrun reports). `write` cleans up its
    partial output itself."""
    message = None
    if ranks.is_main():
        try:
            write()
        except Exception as exc:
            code = disk_full_errno(exc)
            if code is None:
                raise
            message = disk_full_message(code, what, where, kept)
    message = ranks.broadcast_object(message)
    if message is not None:
        raise DiskFullError(message)


def all_ranks_write(write, what: str, where: Path, kept: str, cleanup) -> None:
    """Collective: every rank calls `write()` (its shards of a checkpoint). When any rank fails, rank 0
    calls `cleanup()` and every rank raises: the same DiskFullError when a rank ran out of space, else
    the rank's own error (a peer whose write succeeded raises a RuntimeError naming the failed rank).
    torch.distributed.checkpoint reports a failed write as a CheckpointException, a BaseException whose
    text holds each rank's error."""
    failure: BaseException | None = None
    try:
        write()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        failure = exc
    code = None if failure is None else disk_full_errno(failure) or disk_full_errno(RuntimeError(str(failure)))
    reports = ranks.all_gather_object(None if failure is None else (code, f"{type(failure).__name__}: {failure}"))
    failed = [(r, report) for r, report in enumerate(reports) if report is not None]
    if not failed:
        return
    if ranks.is_main():
        cleanup()
    code = next((report[0] for _, report in failed if report[0] is not None), None)
    if code is not None:  # rank 0's message: it knows which checkpoint is kept
        raise DiskFullError(ranks.broadcast_object(disk_full_message(code, what, where, kept) if ranks.is_main() else None))
    if failure is not None:
        raise failure
    raise RuntimeError(f"{what}: rank {failed[0][0]} failed to write its shards: {failed[0][1][1]}")


# ------------------------------------------------------------------------------------ signals

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While the loop runs (a `with` block), SIGTERM and SIGINT ask it to stop at the next step boundary.
    Installed only in the main thread (Python delivers signals there); elsewhere the handlers stay as they are."""

    def __init__(self):
        self.received: list[int] = []
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not None:  # None: a handler set outside Python, left alone
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if signum in self.received and ranks.world_size() > 1:
            return  # torchrun forwards a Ctrl-C the workers got already; it kills them itself after its grace period
        if signum in self.received:  # the same signal again: what it did before the loop began
            previous = self.previous.get(signum, signal.SIG_DFL)
            self._restore()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signum)
            return
        self.received.append(signum)
        if ranks.is_main():  # os.write: a print could re-enter a stream the interrupted code is writing
            again = f" ({name} again stops at once)" if ranks.world_size() == 1 else ""
            os.write(2, f"posttrain: {name} received: stopping after this step with a checkpoint{again}\n".encode())

    def requested(self) -> int:
        """The signal that stops the run at this step boundary (0: none), the same on every rank: SIGTERM
        when any rank received it, else SIGINT when any rank did. Collective when several processes run."""
        mine = self.received[0] if self.received else 0
        if ranks.world_size() == 1:
            return mine
        term, interrupt = ranks.all_reduce_sum([mine == signal.SIGTERM, mine == signal.SIGINT])
        return signal.SIGTERM if term else signal.SIGINT if interrupt else 0
