"""The stage registry: every stage's name, config class, runner, presets and kind, in one table.

The CLI, the Python API, pipelines and reports all read it (layer 8); nothing below them imports
it. A stage's module is named by its import path and imported on first use, so reading the table
(`posttrain --help`, `import posttrain`) imports neither torch nor transformers. Presets stay in the
stage's module (`PRESETS = {name: {key: value}}`) and are resolved here, by `preset_values`.

Adding a stage is one `StageSpec` line below.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from posttrain.errors import ConfigError

# What a stage does, for the surfaces that group stages (the report counts the "rl" ones).
KINDS = {
    "train": "trains a model offline from a dataset",
    "rl": "trains a policy online: samples from it, rewards the samples, updates it",
    "sample": "samples from a policy and writes a dataset",
    "eval": "measures policies, trains nothing",
}


@dataclass(frozen=True)
class StageSpec:
    name: str
    module_name: str  # imported on first use
    config_name: str
    runner_name: str
    kind: str  # a key of KINDS
    description: str  # one line, for `posttrain --help` and the API functions' docstrings

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    @property
    def config_class(self) -> type:
        return getattr(self.module, self.config_name)

    @property
    def runner(self) -> Callable[[Any], dict]:
        return getattr(self.module, self.runner_name)

    @property
    def presets(self) -> dict[str, dict]:
        """The module's PRESETS (stages that share a module share its presets: grpo and rloo)."""
        return getattr(self.module, "PRESETS", {})


STAGES: dict[str, StageSpec] = {spec.name: spec for spec in [
    StageSpec("sft", "posttrain.algorithms.sft", "SFTConfig", "run_sft", "train",
              "Supervised fine-tuning on input-output pairs (token-mean cross-entropy)."),
    StageSpec("eval", "posttrain.eval.evaluate", "EvalConfig", "run_eval", "eval",
              "Generate on held-out prompts and score them with any reward specs: mean, pass rate, pass@k, avg@k, length; GSM8K / MATH / AIME; an LLM judge's win rate (length-controlled) or 1-10 rating; lm-evaluation-harness tasks (harness=lm_eval)."),
    StageSpec("distill", "posttrain.algorithms.distill", "DistillConfig", "run_distill", "train",
              "Knowledge distillation from a teacher (same tokenizer, any size): off-/on-policy (GKD), soft+hard targets, context distillation."),
    StageSpec("rm", "posttrain.algorithms.rm", "RewardConfig", "run_rm", "train",
              "Reward model from preference pairs, ties or K-wise rankings (Bradley-Terry)."),
    StageSpec("prm", "posttrain.algorithms.prm", "PRMConfig", "run_prm", "train",
              "Process reward model from stepwise labels (a good/bad label per reasoning step)."),
    StageSpec("dpo", "posttrain.algorithms.dpo", "DPOConfig", "run_dpo", "train",
              "Direct preference optimization and its family (IPO, cDPO, SimPO, ORPO, CPO, APO, RPO, ...)."),
    StageSpec("kto", "posttrain.algorithms.kto", "KTOConfig", "run_kto", "train",
              "Kahneman-Tversky optimization on unpaired desirable / undesirable feedback."),
    StageSpec("grpo", "posttrain.algorithms.grpo", "GRPOConfig", "run_grpo", "rl",
              "Online RL from rewards: GRPO and its family (DAPO, Dr.GRPO, GSPO, GRPO+), REINFORCE(++)."),
    StageSpec("rloo", "posttrain.algorithms.grpo", "RLOOConfig", "run_rloo", "rl",
              "Online RL with RLOO's leave-one-out baseline (the GRPO trainer with advantage=rloo)."),
    StageSpec("ppo", "posttrain.algorithms.ppo", "PPOConfig", "run_ppo", "rl",
              "RLHF with PPO: actor with a value head, frozen reference, KL in the reward, GAE, K epochs of clipped updates."),
    StageSpec("online_dpo", "posttrain.algorithms.online_dpo", "OnlineDPOConfig", "run_online_dpo", "rl",
              "Online DPO per batch: two samples per prompt from the current policy, ranked by reward, a DPO / IPO / SLiC step; BPO's behaviour anchor."),
    StageSpec("rejection", "posttrain.algorithms.rejection", "RejectionConfig", "run_rejection", "train",
              "Rejection-sampling fine-tuning: expert iteration / RFT (best of n) and ReST-EM (threshold filter), then SFT, iterated."),
    StageSpec("pairs", "posttrain.algorithms.pairs", "PairsConfig", "run_pairs", "sample",
              "Preference pairs from a policy: sample k completions per prompt, pick pairs, label by reward, Bradley-Terry draw or an LLM judge."),
    StageSpec("compare", "posttrain.algorithms.compare", "CompareConfig", "run_compare", "eval",
              "Evaluate policies against the SFT reference on held-out prompts: gold reward, KL(pi||pi_ref), win rate, best-of-n."),
    StageSpec("constitution", "posttrain.algorithms.constitution", "ConstitutionConfig", "run_constitution", "train",
              "Constitutional AI (supervised stage): sample, self-critique against principles, revise, SFT on the revisions."),
    StageSpec("annotate", "posttrain.annotate.stage", "AnnotateConfig", "run_annotate", "sample",
              "Human preferences: people label a policy's samples in a web app (pairwise or K-wise); exports rows for rm / dpo."),
    StageSpec("quickstart", "posttrain.quickstart", "QuickstartConfig", "run_quickstart", "train",
              "The main job on the embedded default: evaluate, SFT, evaluate again."),
]}


def get_stage(name: str) -> StageSpec:
    """The stage called `name`; a ConfigError naming the valid stages when there is none."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage '{name}'; valid stages: {', '.join(STAGES)}")
    return STAGES[name]


def preset_values(stage: str, preset: str | None) -> dict:
    """The values of `stage`'s preset `preset` ({} for None); a ConfigError naming the valid presets."""
    if preset is None:
        return {}
    presets = get_stage(stage).presets
    if preset not in presets:
        raise ConfigError(f"unknown preset '{preset}' for {stage}; valid presets: {', '.join(presets) or 'none'}")
    return dict(presets[preset])


def stage_names(kind: str) -> tuple[str, ...]:
    """The stages of one kind (a key of KINDS), in table order."""
    if kind not in KINDS:
        raise ValueError(f"unknown stage kind '{kind}'; valid: {', '.join(KINDS)}")
    return tuple(name for name, spec in STAGES.items() if spec.kind == kind)


def stage_of_config(config) -> StageSpec | None:
    """The stage whose config class `config` is exactly (only stages already imported can match)."""
    for spec in STAGES.values():
        module = sys.modules.get(spec.module_name)
        if module is not None and type(config) is getattr(module, spec.config_name, None):
            return spec
    return None
