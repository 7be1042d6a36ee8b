"""Soak: a long GRPO run whose rewards execute generated programs, watched for leaks.

The run is a plain `posttrain grpo` on the embedded model with two rewards: `code_tests` on
examples/code.jsonl (the policy's completions against the rows' tests) and, at weight 0,
soak_programs.py's `generated_programs`, which runs every completion wrapped in one of a mix of
hostile behaviours (lingering children, daemons, file, memory and output floods, spinning, sockets).
Every `--every` seconds this script records the trainer's resident memory, the sandbox processes
alive (processes of a sandbox uid, or running sandbox_child.py) and the sandbox's temporary
directories; after `--minutes` it stops the trainer with SIGINT (Ctrl-C) and counts what is left.

Pass: resident memory flat after warm-up (the slope over the second half is reported in MB/hour),
0 sandbox processes and 0 temporary directories left. There is no peer to compare with: TRL, OpenRLHF
and verl ship no sandbox (their code rewards run programs in the trainer's process or a plain
subprocess).

    python benchmarks/soak_code_reward.py --minutes 120            # the figures in docs/sandbox.md ("Soak")
    python benchmarks/soak_code_reward.py --minutes 3 --every 10   # quick look
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posttrain.rewards.sandbox import SANDBOX_UIDS

REPO = Path(__file__).resolve().parents[1]


def trainer_command(output_dir: str) -> list[str]:
    return [sys.executable, "-m", "posttrain", "grpo", "model=embedded", f"dataset={REPO / 'examples/code.jsonl'}",
            f"reward_funcs=[code_tests:timeout=2,{REPO / 'benchmarks/soak_programs.py'}:generated_programs]",
            "reward_weights=[1.0,0.0]", "max_steps=1000000", "prompts_per_step=4", "num_generations=4",
            "max_new_tokens=96", "logging_steps=5", "save_steps=0", f"output_dir={output_dir}"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sandbox_processes() -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if fields["State"].split()[0] == "Z":
            continue
        if int(fields["Uid"].split()[0]) in SANDBOX_UIDS or b"sandbox_child.py" in command:
            count += 1
    return count


def sandbox_temp_dirs() -> int:
    return len(glob.glob(os.path.join(tempfile.gettempdir(), "posttrain-sandbox-*")))


def steps_done(output_dir: str) -> int:
    try:
        lines = Path(output_dir, "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if line.strip()]
    return max(steps, default=0)


def slope_per_hour(samples: list[dict]) -> float:
    """Least-squares slope of RSS (MB) against time (hours)."""
    if len(samples) < 2:
        return 0.0
    xs = [s["seconds"] / 3600 for s in samples]
    ys = [s["rss_mb"] for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--log", default="soak.jsonl", help="where each sample is appended")
    args = parser.parse_args()
    before = {"processes": sandbox_processes(), "temp_dirs": sandbox_temp_dirs()}
    output_dir = tempfile.mkdtemp(prefix="soak-run-")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = trainer_command(f"{output_dir}/run")
    print("$ " + " ".join(command), flush=True)
    trainer = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{output_dir}/stderr.txt", "w"))
    started, samples = time.monotonic(), []
    with open(args.log, "a") as log:
        while time.monotonic() - started < args.minutes * 60 and trainer.poll() is None:
            time.sleep(args.every)
            if trainer.poll() is not None:
                break
            sample = {"seconds": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(trainer.pid), 1),
                      "sandbox_processes": sandbox_processes(), "temp_dirs": sandbox_temp_dirs(),
                      "step": steps_done(f"{output_dir}/run")}
            samples.append(sample)
            log.write(json.dumps(sample) + "\n")
            log.flush()
            print(json.dumps(sample), flush=True)
    crashed = trainer.poll() is not None
    if not crashed:
        trainer.send_signal(signal.SIGINT)
    try:
        trainer.wait(timeout=120)
    except subprocess.TimeoutExpired:
        trainer.kill()
        trainer.wait()
    time.sleep(3)
    left = {"processes": sandbox_processes() - before["processes"], "temp_dirs": sandbox_temp_dirs() - before["temp_dirs"]}
    second_half = [s for s in samples if s["seconds"] >= samples[-1]["seconds"] / 2] if samples else []
    warm = second_half[0]["rss_mb"] if second_half else 0.0
    summary = {"minutes": round((samples[-1]["seconds"] if samples else 0) / 60, 1), "steps": steps_done(f"{output_dir}/run"),
               "trainer_exit": trainer.returncode, "crashed_before_the_end": crashed,
               "rss_mb_at_half": warm, "rss_mb_at_end": samples[-1]["rss_mb"] if samples else 0.0,
               "rss_mb_max": max((s["rss_mb"] for s in samples), default=0.0),
               "rss_slope_mb_per_hour_second_half": round(slope_per_hour(second_half), 2),
               "sandbox_processes_max_during": max((s["sandbox_processes"] for s in samples), default=0),
               "sandbox_processes_left": left["processes"], "temp_dirs_left": left["temp_dirs"]}
    print(json.dumps(summary, indent=2))
    if crashed:
        print(Path(output_dir, "stderr.txt").read_text()[-3000:])


if __name__ == "__main__":
    main()
