"""`posttrain <stage> --config FILE.yaml [key=value ...]`.

Every stage is a config dataclass plus a `run(config)` function, registered in STAGES and
imported lazily so `--help` stays fast. A UserError anywhere becomes one line on stderr and exit
code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from posttrain.errors import UserError
from posttrain.library_warnings import route_library_warnings

# stage -> (module, config class, run function, one-line description)
STAGES: dict[str, tuple[str, str, str, str]] = {
    "sft": ("posttrain.algorithms.sft", "SFTConfig", "run_sft", "Supervised fine-tuning on input-output pairs (token-mean cross-entropy)."),
    "eval": ("posttrain.eval.evaluate", "EvalConfig", "run_eval", "Generate on held-out prompts and score them: accuracy, pass@k, avg@k, length."),
    "rm": ("posttrain.algorithms.rm", "RewardConfig", "run_rm", "Reward model from preference pairs, ties or K-wise rankings (Bradley-Terry)."),
    "prm": ("posttrain.algorithms.prm", "PRMConfig", "run_prm", "Process reward model from stepwise labels (a good/bad label per reasoning step)."),
    "dpo": ("posttrain.algorithms.dpo", "DPOConfig", "run_dpo", "Direct preference optimization and its family (IPO, cDPO, SimPO, ORPO, CPO, APO, RPO, ...)."),
    "kto": ("posttrain.algorithms.kto", "KTOConfig", "run_kto", "Kahneman-Tversky optimization on unpaired desirable / undesirable feedback."),
    "grpo": ("posttrain.algorithms.grpo", "GRPOConfig", "run_grpo", "Online RL from rewards: GRPO and its family (DAPO, Dr.GRPO, GSPO, GRPO+), REINFORCE(++)."),
    "rloo": ("posttrain.algorithms.grpo", "RLOOConfig", "run_rloo", "Online RL with RLOO's leave-one-out baseline (the GRPO trainer with advantage=rloo)."),
    "ppo": ("posttrain.algorithms.ppo", "PPOConfig", "run_ppo", "RLHF with PPO: actor with a value head, frozen reference, KL in the reward, GAE, K epochs of clipped updates."),
    "rejection": ("posttrain.algorithms.rejection", "RejectionConfig", "run_rejection", "Rejection-sampling fine-tuning: expert iteration / RFT (best of n) and ReST-EM (threshold filter), then SFT, iterated."),
    "pairs": ("posttrain.algorithms.pairs", "PairsConfig", "run_pairs", "Preference pairs from a policy: sample k completions per prompt, pick pairs, label by reward, Bradley-Terry draw or an LLM judge."),
    "compare": ("posttrain.algorithms.compare", "CompareConfig", "run_compare", "Evaluate policies against the SFT reference on held-out prompts: gold reward, KL(pi||pi_ref), win rate, best-of-n."),
    "constitution": ("posttrain.algorithms.constitution", "ConstitutionConfig", "run_constitution", "Constitutional AI (supervised stage): sample, self-critique against principles, revise, SFT on the revisions."),
    "quickstart": ("posttrain.quickstart", "QuickstartConfig", "run_quickstart", "The main job on the embedded default: evaluate, SFT, evaluate again."),
}


def _stage_parts(stage: str):
    module_name, config_name, run_name, _ = STAGES[stage]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, run_name)


def _usage() -> str:
    lines = ["usage: posttrain <stage> [--config FILE.yaml] [key=value ...]", "", "stages:"]
    lines += [f"  {name:<11} {desc}" for name, (_, _, _, desc) in STAGES.items()]
    lines += [f"  {'pipeline':<11} Run stages in order from FILE.yaml or a shipped recipe (`posttrain pipeline --help`)."]
    lines += [f"  {'report':<11} Write RUN_DIR/report.html: training curves, reward vs KL, win rates, samples."]
    lines += ["", "`posttrain <stage> --help` lists every option with its default and meaning."]
    return "\n".join(lines)


def _parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="posttrain", add_help=False)
    parser.add_argument("stage", nargs="?")
    parser.add_argument("--config", "-c", default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("overrides", nargs="*")
    try:
        args, unknown = parser.parse_known_intermixed_args(argv)  # `dpo --preset simpo k=v` too
    except SystemExit:
        raise UserError("could not parse the command line; run `posttrain --help`") from None
    if unknown:
        flags = " ".join(unknown)
        raise UserError(f"unknown option(s) {flags}; options are given as key=value (see `posttrain {args.stage or '<stage>'} --help`)")
    return args


def run_stage(stage: str, config_file: str | None, overrides: list[str], preset: str | None = None):
    from posttrain.config import load_config

    config_cls, run = _stage_parts(stage)
    preset_values = None
    if preset is not None:
        presets = getattr(importlib.import_module(STAGES[stage][0]), "PRESETS", {})
        if preset not in presets:
            raise UserError(f"unknown preset '{preset}' for {stage}; valid presets: {', '.join(presets) or 'none'}")
        preset_values = presets[preset]
    config = load_config(config_cls, config_file, overrides, preset=preset_values)
    return run(config)


def _exit_without_teardown() -> None:
    """End a finished torchrun worker at once. All work is saved and the process group was left
    together; gloo's C++ destructors at interpreter exit can still abort one rank at random
    ("terminate called without an active exception"), which torchrun reports as a failed run."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the command line: libraries' warnings go to a log (a Python caller, e.g. a test, keeps its own)
        route_library_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "pipeline":
            from posttrain.pipeline import pipeline_command

            return pipeline_command(argv[1:])
        if argv and argv[0] == "report":
            from posttrain.report import report_command

            return report_command(argv[1:])
        args = _parse(argv)
        if args.stage is None:
            print(_usage())
            return 0 if args.help else 2
        if args.stage not in STAGES:
            raise UserError(f"unknown stage '{args.stage}'; valid stages: {', '.join(STAGES)}")
        if args.help:
            from posttrain.config import format_help

            config_cls, _ = _stage_parts(args.stage)
            print(f"usage: posttrain {args.stage} [--config FILE.yaml] [key=value ...]\n")
            print(STAGES[args.stage][3])
            doc = (sys.modules[STAGES[args.stage][0]].__doc__ or "").strip()
            if doc:
                print("\n" + doc)
            print("\noptions:")
            print(format_help(config_cls))
            presets = getattr(sys.modules[STAGES[args.stage][0]], "PRESETS", {})
            if presets:
                print("\npresets (--preset NAME; later key=value overrides win):")
                for name, values in presets.items():
                    print(f"  {name:<11} " + " ".join(f"{k}={v}" for k, v in values.items()))
            return 0
        run_stage(args.stage, args.config, args.overrides, args.preset)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _exit_without_teardown()
        return 0
    except UserError as exc:
        print(f"posttrain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("posttrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `posttrain sft --help | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")
        return 0
