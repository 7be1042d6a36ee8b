"""The embedded default: a tiny Llama-style causal LM and its tokenizer, shipped inside the package.

`model=embedded` resolves to EMBEDDED_MODEL_DIR, a `save_pretrained` directory that plain
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` load offline. It was
pretrained by `scripts/pretrain_embedded.py` on a synthetic corpus made by the task code
(`posttrain.tasks.corpus`), with a tokenizer built by `posttrain.embedded.tokenizer_build`;
that script's docstring records the command, run time and base scores.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED_NAME = "embedded"
EMBEDDED_MODEL_DIR: Path = Path(__file__).resolve().parent / "model"
# The embedded model fine-tuned as a pairwise sentiment judge (bfloat16), for RLAIF and best-of-n with
# a judge: `model=embedded-judge`; made by scripts/train_embedded_judge.py (posttrain.tasks.sentiment_judge).
EMBEDDED_JUDGE_DIR: Path = Path(__file__).resolve().parent / "judge"
SHIPPED = {EMBEDDED_NAME: EMBEDDED_MODEL_DIR, "embedded-judge": EMBEDDED_JUDGE_DIR}

__all__ = ["EMBEDDED_JUDGE_DIR", "EMBEDDED_MODEL_DIR", "EMBEDDED_NAME", "SHIPPED"]
