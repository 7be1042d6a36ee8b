"""Faults during an SFT run through the CLI: a learning rate that blows the model up stops the run after
max_nonfinite_steps skipped steps; a full disk while checkpointing stops it with the previous checkpoint
intact; SIGTERM and SIGINT save a checkpoint and exit 143 / 130. After the disk is freed or the signal
is over, resume=true ends exactly where the uninterrupted run ends (torch.equal weights, the same
metrics lines but timings)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from conftest import REPO, final_weights, read_metrics, run_cli, sft_rows, without_timing, write_jsonl
from posttrain.algorithms.sft import SFTConfig, run_sft
from posttrain.config import load_config
from posttrain.train.loop import STOP_ENV, STOP_SIGNAL_ENV
from private_tmpfs import require_tmpfs, run_with_tmpfs


def sft_args(tmp_path, tiny_llama, **values) -> list[str]:
    train_file = write_jsonl(tmp_path / "train.jsonl", sft_rows(40))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", sft_rows(6, seed=1))
    options = {"model": tiny_llama, "dataset": train_file, "eval_dataset": eval_file, "device": "cpu", "max_length": 128,
               "batch_size": 2, "max_steps": 12, "learning_rate": 1e-3, "warmup_steps": 2, "logging_steps": 3, "eval_steps": 4,
               "save_steps": 4, "keep_last": 1, **values}
    return [f"{k}={v}" for k, v in options.items()]


def run_whole(args: list[str], out) -> None:
    """The uninterrupted twin, in this process (the same code as the CLI's, without its start-up)."""
    run_sft(load_config(SFTConfig, None, [*args, f"output_dir={out}"]))


def assert_same_run(whole, resumed) -> None:
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(whole))
    a, b = final_weights(whole), final_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("posttrain: error:")]


def test_a_learning_rate_that_blows_up_stops_after_max_nonfinite_steps(tmp_path, tiny_llama):
    """lr=1e30: step 1 is finite and makes the weights huge, every later loss is NaN. Steps 2-4 are skipped
    (step 2's checkpoint holds step 1's finite weights) and the run stops at step 4 with one line, exit 2."""
    out = tmp_path / "run"
    done = run_cli("sft", *sft_args(tmp_path, tiny_llama, learning_rate=1e30, lr_scheduler="constant", warmup_steps=0,
                                     logging_steps=1, save_steps=2, keep_last=0), f"output_dir={out}")
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith("posttrain: error: training stopped at step 4 of 12: the loss or gradient was not finite for 3 steps "
                           "in a row (max_nonfinite_steps=3; last: loss nan, grad_norm nan)"), line
    assert "checkpoints/step-2 is the last checkpoint" in line and "Lower learning_rate" in line
    assert sum(w.startswith("posttrain: warning: step ") for w in done.stderr.splitlines()) == 3
    records = read_metrics(out)
    assert [(r["step"], r["nonfinite"], r["nonfinite_steps"]) for r in records] == [(1, 0.0, 0), (2, 1.0, 1), (3, 1.0, 2), (4, 1.0, 3)]
    assert not (out / "final").exists() and sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]
    weights = torch.load(out / "checkpoints" / "step-2" / "model.pt")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_sigterm_saves_a_checkpoint_and_resume_ends_where_the_uninterrupted_run_ends(tmp_path, tiny_llama):
    """SIGTERM (sent by the process to itself right after step 6, through the real handler) finishes the
    step, saves checkpoints/step-6 although save_steps=4, and exits 143 with one line; resume=true continues."""
    args = sft_args(tmp_path, tiny_llama)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_whole(args, whole)

    stopped = run_cli("sft", *args, f"output_dir={cut}", env={STOP_ENV: "6", STOP_SIGNAL_ENV: "TERM"})
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.splitlines()[-2:] == [
        "posttrain: SIGTERM received: stopping after this step with a checkpoint (SIGTERM again stops at once)",
        f"posttrain: stopped by SIGTERM after step 6 of 12; saved {cut}/checkpoints/step-6: run the same command with resume=true to continue"]
    assert not (cut / "final").exists() and sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["step-6"]

    resumed = run_cli("sft", *args, f"output_dir={cut}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 6" in resumed.stdout
    assert [r["step"] for r in read_metrics(cut)] == [3, 4, 6, 8, 9, 12]
    assert_same_run(whole, cut)


def test_sigint_from_outside_at_any_moment_saves_and_resumes_exactly(tmp_path, tiny_llama):
    """Ctrl-C as a terminal sends it: SIGINT from another process once training has begun, at whatever
    step that is. No periodic checkpoints (save_steps=0): the interrupt's checkpoint is the only one."""
    args = sft_args(tmp_path, tiny_llama, max_steps=60, logging_steps=1, eval_steps=0, save_steps=0)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_whole(args, whole)

    env = {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([sys.executable, "-m", "posttrain", "sft", *args, f"output_dir={cut}"], cwd=REPO,
                               env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not read_metrics(cut) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    checkpoints = [p.name for p in (cut / "checkpoints").iterdir()]
    assert len(checkpoints) == 1 and stderr.splitlines()[-1].startswith(f"posttrain: stopped by SIGINT after step {checkpoints[0][5:]} of 60")
    assert not (cut / "final").exists() and read_metrics(cut)[-1]["step"] == int(checkpoints[0][5:]) < 60

    resumed = run_cli("sft", *args, f"output_dir={cut}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(whole, cut)


DISK_FULL_SCRIPT = '''
cd "$REPO"
set +e
"$PYTHON" -m posttrain sft $ARGS output_dir="$DISK/run" > "$OUT/first.out" 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
set -e
cp -a "$DISK/run" "$OUT/after-first"
mount -o remount,size=64m posttrain-test "$DISK"
set +e
"$PYTHON" -m posttrain sft $ARGS output_dir="$DISK/run" resume=true > "$OUT/second.out" 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
set -e
cp -a "$DISK/run" "$OUT/after-resume"
'''


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_resume_works(tmp_path, tiny_llama):
    """On an 800 KiB tmpfs one checkpoint (~510 KiB) fits and the next does not: the run stops at step 4
    with one line naming the directory and its free space, step-2 intact. The disk then grows (as if
    space were freed) and resume=true ends where a run on a roomy disk ends."""
    require_tmpfs()
    args = sft_args(tmp_path, tiny_llama, max_steps=6, logging_steps=1, eval_steps=0, save_steps=2)
    whole = tmp_path / "whole"
    run_whole(args, whole)

    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    done = run_with_tmpfs({disk: "800k"}, DISK_FULL_SCRIPT, env={"REPO": str(REPO), "DISK": str(disk), "OUT": str(out), "ARGS": " ".join(args)})
    assert done.returncode == 0, done.stderr
    first_err = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "2", first_err
    [line] = error_lines(first_err)
    assert line.startswith(f"posttrain: error: no space left on device while writing checkpoint step-4 to {disk}/run/checkpoints ("), line
    assert line.endswith(" free there); the previous checkpoint, step-2, is intact. Free some space or point output_dir at a larger disk, "
                         "then run the same command with resume=true"), line
    first = out / "after-first"
    assert sorted(p.name for p in (first / "checkpoints").iterdir()) == ["step-2"] and not (first / "final").exists()

    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    assert "resuming at step 2" in (out / "second.out").read_text()
    assert_same_run(whole, out / "after-resume")
