"""A full disk while writing a checkpoint, final/ or metrics.jsonl: the partial write is removed, the
previous checkpoint stays whole and loadable, and a DiskFullError names the directory and its free
space. The disks are real: tmpfs file systems of a few hundred KiB in a private mount namespace."""

from __future__ import annotations

import json
import re

from private_tmpfs import require_tmpfs, run_with_tmpfs

PROGRAM = '''
import json, os, sys
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.errors import DiskFullError
from posttrain.train.checkpoint import load_checkpoint, save_checkpoint
from posttrain.train.loop import save_final
from posttrain.train.metrics import MetricsWriter

ckpt_fs, final_fs, metrics_fs, model_dir = map(Path, sys.argv[1:5])
out = {}

# a checkpoint of ~480 KiB fits on the 640 KiB disk; the second one, written while the first is kept, does not
torch.manual_seed(0)
model = torch.nn.Linear(200, 200)
optimizer = torch.optim.AdamW(model.parameters())
model(torch.randn(2, 200)).sum().backward()
optimizer.step()
saved = {k: v.clone() for k, v in model.state_dict().items()}
save_checkpoint(ckpt_fs / "checkpoints", 1, model, optimizer, {"note": "first"}, keep_last=1)
with torch.no_grad():
    model.weight.add_(1.0)
try:
    save_checkpoint(ckpt_fs / "checkpoints", 2, model, optimizer, {"note": "second"}, keep_last=1)
except DiskFullError as exc:
    out["checkpoint"] = str(exc)
out["checkpoint_files"] = sorted(p.name for p in (ckpt_fs / "checkpoints").iterdir())
fresh = torch.nn.Linear(200, 200)
state = load_checkpoint(ckpt_fs / "checkpoints" / "step-1", fresh, torch.optim.AdamW(fresh.parameters()))
out["restored"] = state["note"] == "first" and all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())

# final/ (safetensors, written by save_pretrained) on a 64 KiB disk
lm, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
try:
    save_final(lm, tokenizer, final_fs / "final", SimpleNamespace(merge_lora=True), None, kept="what the run keeps")
except DiskFullError as exc:
    out["final"] = str(exc)
out["final_files"] = sorted(p.name for p in final_fs.iterdir())

# metrics.jsonl on a 16 KiB disk
writer = MetricsWriter(metrics_fs / "metrics.jsonl", total_steps=10**6, stream=open(os.devnull, "w"))
try:
    for step in range(1, 10**6):
        writer.log({"step": step, "loss": 1.0, "note": "x" * 200})
except DiskFullError as exc:
    out["metrics"] = str(exc)
writer.close()
print(json.dumps(out))
'''

FREE = r"\(\d+(\.\d)? (bytes|KiB) free there\)"
ADVICE = r"\. Free some space or point output_dir at a larger disk, then run the same command with resume=true$"


def test_full_disks_leave_the_previous_state_whole_and_say_why(tmp_path, tiny_llama):
    require_tmpfs()
    disks = {tmp_path / name: size for name, size in (("ckpt", "640k"), ("final", "64k"), ("metrics", "16k"))}
    for d in disks:
        d.mkdir()
    (tmp_path / "program.py").write_text(PROGRAM)
    args = " ".join(str(d) for d in disks)
    done = run_with_tmpfs(disks, f'exec "$PYTHON" {tmp_path / "program.py"} {args} {tiny_llama}')
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr  # metrics.jsonl's unwritable buffer is not flushed again at exit
    out = json.loads(done.stdout.splitlines()[-1])

    assert re.match(rf"^no space left on device while writing checkpoint step-2 to {tmp_path}/ckpt/checkpoints {FREE}; "
                    rf"the previous checkpoint, step-1, is intact{ADVICE}", out["checkpoint"]), out["checkpoint"]
    assert out["checkpoint_files"] == ["step-1"] and out["restored"]  # no .tmp-step-2 left, step-1 loads as saved

    assert re.match(rf"^no space left on device while writing final/ to {tmp_path}/final {FREE}; what the run keeps{ADVICE}",
                    out["final"]), out["final"]
    assert out["final_files"] == []  # neither final/ nor its temp dir

    assert re.match(rf"^no space left on device while writing metrics.jsonl to {tmp_path}/metrics {FREE}; "
                    rf"the checkpoints are intact{ADVICE}", out["metrics"]), out["metrics"]
