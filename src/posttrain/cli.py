"""`posttrain <stage> --config FILE.yaml [key=value ...]`.

Every stage is a config dataclass plus a `run(config)` function, registered in posttrain.stages and
imported lazily so `--help` stays fast. A UserError anywhere becomes one line on stderr and exit
code 2, with no traceback; SIGTERM / SIGINT during training save a checkpoint and exit 143 / 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from posttrain.errors import Interrupted, UserError
from posttrain.library_warnings import route_library_warnings
from posttrain.stages import STAGES, get_stage, preset_values


def _usage() -> str:
    lines = ["usage: posttrain <stage> [--config FILE.yaml] [key=value | --key value ...]", "", "stages:"]
    lines += [f"  {name:<11} {spec.description}" for name, spec in STAGES.items()]
    lines += [f"  {'pipeline':<11} Run stages in order from FILE.yaml or a shipped recipe (`posttrain pipeline --help`)."]
    lines += [f"  {'report':<11} Write RUN_DIR/report.html: training curves, reward vs KL, win rates, samples."]
    lines += ["", "`posttrain <stage> --help` lists every option with its default and meaning."]
    return "\n".join(lines)


_OWN_FLAGS = ("--config", "-c", "--preset", "--help", "-h")
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")  # a `key=value` word (a value such as `math_accuracy:tol=1` is not one)
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf$)")


def _is_flag_value(word: str) -> bool:
    """Whether the word after `--key` is its value: not another flag (a negative number is a value)
    and not a `key=value` word."""
    return not _OVERRIDE.match(word) and (not word.startswith("-") or bool(_NEGATIVE_NUMBER.match(word)))


def flags_to_overrides(argv: list[str]) -> list[str]:
    """TRL's (HfArgumentParser's) syntax as key=value words: `--key value` and `--key=value`; `--flag`
    alone is `flag=true`; dashes in a name are underscores. A value starting with '-' that is not a
    number needs the `--key=-value` form. --config / -c / --preset / --help keep their meaning."""
    out, i = [], 0
    while i < len(argv):
        word, i = argv[i], i + 1
        name, eq, text = word.partition("=")
        if name in _OWN_FLAGS or not word.startswith("--") or word == "--":
            out.append(word)
            if name in ("--config", "-c", "--preset") and not eq and i < len(argv):
                out.append(argv[i])
                i += 1
            continue
        key = name[2:].replace("-", "_")
        if eq:
            out.append(f"{key}={text}")
        elif i < len(argv) and _is_flag_value(argv[i]):
            out.append(f"{key}={argv[i]}")
            i += 1
        else:
            out.append(f"{key}=true")
    return out


def _parse(argv: list[str]):
    argv = flags_to_overrides(argv)
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
    if unknown:  # name the flags, not the key=value words argparse gave up on after them
        flags = " ".join(word for word in unknown if word.startswith("-")) or " ".join(unknown)
        raise UserError(f"unknown option(s) {flags}; options are given as key=value or --key value (see `posttrain {args.stage or '<stage>'} --help`)")
    return args


def run_stage(stage: str, config_file: str | None, overrides: list[str], preset: str | None = None):
    from posttrain.config import load_config

    spec = get_stage(stage)
    from posttrain.report.model_card import run_stage as run_with_card

    config = load_config(spec.config_class, config_file, overrides, preset=preset_values(stage, preset))
    return run_with_card(spec, config)  # final/README.md, and the push with push_to_hub=true


def _print_help(command: str, description: str, doc: str | None, config_cls, presets: dict) -> None:
    from posttrain.config import format_help

    print(f"usage: posttrain {command} [--config FILE.yaml] [key=value ...]\n")
    print(description)
    if (doc or "").strip():
        print("\n" + doc.strip())
    print("\noptions:")
    print(format_help(config_cls))
    if presets:
        print("\npresets (--preset NAME; later key=value overrides win):")
        for name, values in presets.items():
            print(f"  {name:<11} " + " ".join(f"{k}={v}" for k, v in values.items()))


def _annotate_subcommand(name: str, argv: list[str]) -> int:
    """`posttrain annotate create|serve|export|status [key=value ...]`."""
    from posttrain.annotate.commands import SUBCOMMANDS
    from posttrain.config import load_config
    from posttrain.errors import ConfigError

    if name not in SUBCOMMANDS:
        raise ConfigError(f"unknown annotate subcommand '{name}'; valid: {', '.join(SUBCOMMANDS)} "
                          "(or `posttrain annotate key=value ...` for the whole create, label, export stage)")
    config_cls, runner, description = SUBCOMMANDS[name]
    args = _parse(["annotate", *argv])
    if args.help:
        _print_help(f"annotate {name}", description, None, config_cls, {})
        return 0
    if args.preset:
        raise ConfigError(f"`posttrain annotate {name}` has no presets")
    runner(load_config(config_cls, args.config, args.overrides))
    return 0


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
        if len(argv) > 1 and argv[0] == "annotate" and not argv[1].startswith("-") and "=" not in argv[1]:
            return _annotate_subcommand(argv[1], argv[2:])
        args = _parse(argv)
        if args.stage is None:
            print(_usage())
            return 0 if args.help else 2
        spec = get_stage(args.stage)
        if args.help:
            config_cls = spec.config_class  # imports the stage's module before anything is printed
            _print_help(args.stage, spec.description, spec.module.__doc__, config_cls, spec.presets)
            return 0
        run_stage(args.stage, args.config, args.overrides, args.preset)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            _exit_without_teardown()
        return 0
    except Interrupted as exc:  # SIGTERM / SIGINT: a checkpoint was saved; exit 128 + the signal
        print(f"posttrain: {exc}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"posttrain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("posttrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `posttrain sft --help | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")
        return 0
