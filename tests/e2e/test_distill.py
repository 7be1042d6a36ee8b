"""distill end to end: a random-init student of another size learns the embedded model's distributions
on task:arithmetic (held-out KL to the teacher falls), and a teacher with another tokenizer is one
line and exit code 2 through the CLI."""

from __future__ import annotations

from conftest import read_metrics
from posttrain.algorithms.distill import DistillConfig, run_distill
from posttrain.cli import main
from posttrain.config import build_config


def test_random_init_student_learns_the_embedded_teacher(tmp_path):
    """Forward KL (preset kd) into a 1-layer, 64-wide student: held-out KL(teacher || student) from
    ~5.5 after 2 steps to ~4.4 after 8 (measured: 5.55 -> 4.42)."""
    out = tmp_path / "run"
    config = build_config(DistillConfig, dict(
        teacher="embedded", beta=0.0, student_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1},
        dataset="task:arithmetic:train:32", eval_dataset="task:arithmetic:test:8", max_steps=8, eval_steps=2,
        batch_size=8, learning_rate=3e-3, lr_scheduler="constant", logging_steps=2, output_dir=str(out), device="cpu"))
    run_distill(config)
    evals = [r["eval_kl"] for r in read_metrics(out)]
    assert len(evals) == 4 and evals == sorted(evals, reverse=True), evals
    assert evals[-1] < evals[0] - 0.5, evals
    assert (out / "final" / "config.json").is_file() and '"hidden_size": 64' in (out / "final" / "config.json").read_text()


def test_teacher_with_another_tokenizer_exits_2_with_one_line(tiny_llama, tmp_path, capsys):
    """`posttrain distill ...` (the CLI's main, in-process)."""
    code = main(["distill", f"teacher={tiny_llama}", "model=embedded", "dataset=task:arithmetic:train:8",
                 f"output_dir={tmp_path / 'run'}", "max_steps=1", "device=cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"posttrain: error: teacher={tiny_llama} has another tokenizer than model=embedded (320 vs 1024 tokens)")
    assert "same tokenizer" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
