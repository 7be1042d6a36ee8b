"""`posttrain pipeline FILE.yaml|RECIPE [key=value ...]`: run stages in order in one run directory.

A pipeline file has an optional `output_dir` (default: runs/pipeline-NAME), optional `vars` (name: default; null = must be given as
name=VALUE), optional `defaults` (keys shared by every stage that has them: model, device, seed)
and `stages`, an ordered list of `{name, stage, preset, config}`. A string value may refer to
`${output_dir}`, `${VAR}`, or an earlier stage's `${NAME.final}` / `${NAME.output_dir}`. Every
stage's config is built (and so checked) before the first stage runs. A stage that finished writes
`<its dir>/DONE` with the hash of its resolved config (and of the stages it refers to); a re-run
skips it, refuses to redo it with a changed config unless force=true, and resumes one that crashed
(with the settings it began with: a crashed stage whose options changed also needs force=true).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from posttrain.config import build_config, parse_overrides, read_yaml, to_dict
from posttrain.errors import ConfigError
from posttrain.stages import STAGES, get_stage, preset_values

RECIPES_DIR = Path(__file__).parent / "recipes"
TOP_KEYS = ("output_dir", "vars", "defaults", "stages", "force")
STAGE_KEYS = ("name", "stage", "preset", "config")
# Keys that steer how a run is continued, not what it computes: left out of the config hash.
UNHASHED = ("resume", "overwrite_output_dir")
REF = re.compile(r"\$\{([A-Za-z_][\w-]*)(?:\.([A-Za-z_]\w*))?\}")


@dataclass
class Stage:
    name: str
    stage: str
    config: Any  # the stage's config dataclass, fully resolved
    dir: Path
    hash: str


@dataclass
class Pipeline:
    output_dir: Path
    stages: list[Stage]
    force: bool = False
    vars: dict = field(default_factory=dict)


def recipes() -> dict[str, str]:
    """Shipped recipe name -> its one-line description (the file's first comment line)."""
    out = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        out[path.stem] = first.lstrip("# ").strip()
    return out


def _source_path(source: str) -> Path:
    if source in recipes():
        return RECIPES_DIR / f"{source}.yaml"
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"pipeline '{source}' is neither a file nor a recipe; recipes: {', '.join(recipes())}")
    return path


def _resolve(value, where: str, scope: dict[str, Any], stages: dict[str, Path], deps: set[str]):
    """Replace `${...}` references in a value (strings, and strings inside lists / dicts)."""
    if isinstance(value, list):
        return [_resolve(v, where, scope, stages, deps) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, where, scope, stages, deps) for k, v in value.items()}
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(match: re.Match):
        root, attr = match.group(1), match.group(2)
        if attr is None:
            if root in scope:
                return scope[root]
            raise ConfigError(f"{where}: unknown reference ${{{root}}}; valid: {', '.join('${' + k + '}' for k in scope)}"
                              f" or ${{STAGE.final}} / ${{STAGE.output_dir}} of an earlier stage")
        if root not in stages:
            earlier = ", ".join(stages) or "none"
            raise ConfigError(f"{where}: ${{{root}.{attr}}} names no earlier stage '{root}' (earlier stages: {earlier}); "
                              "a stage can only use the outputs of stages listed before it")
        if attr not in ("final", "output_dir"):
            raise ConfigError(f"{where}: ${{{root}.{attr}}} is not a stage output; use ${{{root}.final}} or ${{{root}.output_dir}}")
        deps.add(root)
        return str(stages[root] / "final") if attr == "final" else str(stages[root])

    whole = REF.fullmatch(value)
    if whole:  # a lone reference keeps its value's type (a var may be a number)
        return lookup(whole)
    return REF.sub(lambda m: str(lookup(m)), value)


def _config_hash(config, dep_hashes: list[str]) -> str:
    values = {k: v for k, v in to_dict(config).items() if k not in UNHASHED}
    text = json.dumps([values, dep_hashes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _split_overrides(overrides: list[str], stage_names: list[str], var_names: list[str]):
    """`output_dir=`, `force=`, `VAR=`, `defaults.KEY=`, `STAGE.KEY=` -> (top, vars, defaults, per-stage)."""
    top, vars_, defaults, per_stage = {}, {}, {}, {n: {} for n in stage_names}
    for key, value in parse_overrides(overrides).items():
        head, _, rest = key.partition(".")
        if key in ("output_dir", "force"):
            top[key] = value
        elif key in var_names:
            vars_[key] = value
        elif head == "defaults" and rest:
            defaults[rest] = value
        elif head in per_stage and rest:
            per_stage[head][rest] = value
        else:
            valid = ["output_dir", "force", *var_names, "defaults.KEY", *(f"{n}.KEY" for n in stage_names)]
            raise ConfigError(f"unknown pipeline override '{key}'; valid: {', '.join(valid)}")
    return top, vars_, defaults, per_stage


def load_pipeline(source: str, overrides: list[str] | None = None) -> Pipeline:
    """Read a pipeline file or recipe, apply overrides, and build every stage's config (nothing runs
    and nothing is written). Any problem is a ConfigError naming the stage and the fix."""
    path = _source_path(source)
    data = read_yaml(path)
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(TOP_KEYS)}")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list of {{name, stage, preset, config}}")
    names = [s.get("name", s.get("stage")) if isinstance(s, dict) else None for s in raw_stages]
    declared_vars = dict(data.get("vars") or {})
    top, given_vars, cli_defaults, per_stage = _split_overrides(overrides or [], [n for n in names if n], list(declared_vars))
    output_dir = str(top.get("output_dir", data.get("output_dir") or f"runs/pipeline-{path.stem}"))
    force = bool(build_config(_Force, {"force": top.get("force", data.get("force", False))}).force)
    variables = {**declared_vars, **given_vars}
    missing = [k for k, v in variables.items() if v is None]
    if missing:
        raise ConfigError(f"pipeline {path.stem} needs {', '.join(f'{k}=VALUE' for k in missing)} (see the comment at the top of {path})")
    defaults = {**(data.get("defaults") or {}), **cli_defaults}

    scope = {"output_dir": output_dir, **variables}
    stage_dirs: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    built: list[Stage] = []
    used_defaults: set[str] = set()
    for i, (raw, name) in enumerate(zip(raw_stages, names), 1):
        where = f"stage {i} ({name or '?'})"
        if not isinstance(raw, dict) or name is None:
            raise ConfigError(f"{path}: {where} must be a mapping with 'name' and 'stage'")
        bad = [k for k in raw if k not in STAGE_KEYS]
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}; a stage has {', '.join(STAGE_KEYS)} (options go under 'config')")
        if not re.fullmatch(r"[A-Za-z_][\w-]*", str(name)) or name in stage_dirs or name in scope:
            raise ConfigError(f"{where}: the name '{name}' must be a unique identifier, not output_dir or a var name")
        stage_type = raw.get("stage", name)
        try:
            spec = get_stage(stage_type)
        except ConfigError:  # the registry's check, worded for a pipeline file
            raise ConfigError(f"{where}: unknown stage type '{stage_type}'; valid: {', '.join(STAGES)}") from None
        config_cls = spec.config_class
        fields = {f.name for f in dataclasses.fields(config_cls)}
        values: dict[str, Any] = {k: v for k, v in defaults.items() if k in fields}
        used_defaults.update(values)
        try:
            values.update(preset_values(stage_type, raw.get("preset")))
        except ConfigError:
            raise ConfigError(f"{where}: unknown preset '{raw['preset']}' for {stage_type}; valid: {', '.join(spec.presets) or 'none'}") from None
        values.update(raw.get("config") or {})
        values.update(per_stage.get(name, {}))
        deps: set[str] = set()
        try:
            values = _resolve(values, where, scope, stage_dirs, deps)
            stage_dir = Path(values.get("output_dir") or Path(output_dir) / name)
            if "output_dir" in fields:
                values["output_dir"] = str(stage_dir)
            if "output_file" in fields and not values.get("output_file"):
                values["output_file"] = str(stage_dir / f"{stage_type}.json")
            config = build_config(config_cls, values)
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        hashes[name] = _config_hash(config, [hashes[d] for d in sorted(deps)])
        stage_dirs[name] = stage_dir
        built.append(Stage(name, stage_type, config, stage_dir, hashes[name]))
    unused = sorted(set(defaults) - used_defaults)
    if unused:
        raise ConfigError(f"defaults key(s) {', '.join(unused)} are options of no stage in this pipeline; remove them or move them under a stage's config")
    return Pipeline(Path(output_dir), built, force, variables)


@dataclass
class _Force:
    force: bool = False


# ------------------------------------------------------------------------------------------- run


def _read_done(stage: Stage) -> dict | None:
    marker = stage.dir / "DONE"
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _status(stage: Stage, force: bool) -> str:
    """skip (finished, same config), rerun (changed config and force=true), resume (crashed) or run."""
    from posttrain.train.rundir import RunDir, changed_settings

    done = _read_done(stage)
    trains = hasattr(stage.config, "output_dir")
    if done is not None and (not trains or (stage.dir / "final").exists()):
        if done.get("hash") == stage.hash:
            return "skip"
        if not force:
            raise ConfigError(f"stage {stage.name}: its config (or that of a stage it uses) changed since it finished in "
                              f"{stage.dir}; pass force=true to redo it, or choose another output_dir")
        return "rerun"
    run = RunDir(stage.dir)
    if not trains or not run.holds_run():
        return "run"
    # A crashed run is resumed with the settings it began with: other settings need force=true (a fresh run).
    changed = changed_settings(run, stage.config)
    if changed and not force and hasattr(stage.config, "resume"):
        several = len(changed) > 1
        raise ConfigError(f"stage {stage.name}: {', '.join(changed)} {'differ' if several else 'differs'} from the unfinished "
                          f"run in {stage.dir}, which a re-run resumes; pass force=true to redo the stage from the start, "
                          f"or restore the old value{'s' if several else ''} (see {run.config}) to resume it")
    return "rerun" if changed else "resume"


def _write_records(pipeline: Pipeline, records: list[dict]) -> None:
    text = "".join(json.dumps(r, default=str) + "\n" for r in records)
    (pipeline.output_dir / "pipeline.jsonl").write_text(text, encoding="utf-8")


def resolved_yaml(pipeline: Pipeline) -> str:
    return yaml.safe_dump({
        "output_dir": str(pipeline.output_dir), "vars": pipeline.vars,
        "stages": [{"name": s.name, "stage": s.stage, "hash": s.hash, "config": to_dict(s.config)} for s in pipeline.stages],
    }, sort_keys=False)


def run_pipeline(pipeline: Pipeline, log=print) -> list[dict]:
    """Run (or skip) each stage in order; returns one record per stage, also in pipeline.jsonl."""
    from posttrain.train.rundir import check_creatable_dir
    from posttrain.report.model_card import run_stage as run_with_card

    check_creatable_dir(pipeline.output_dir, "output_dir")
    for stage in pipeline.stages:
        check_creatable_dir(stage.dir, f"stage {stage.name}: its directory")
    plan = [(stage, _status(stage, pipeline.force)) for stage in pipeline.stages]  # all checks before any work
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    (pipeline.output_dir / "pipeline.yaml").write_text(resolved_yaml(pipeline), encoding="utf-8")
    records: list[dict] = []
    total = len(plan)
    for i, (stage, status) in enumerate(plan, 1):
        head = f"[{i}/{total}] {stage.name} ({stage.stage})"
        if status == "skip":
            done = _read_done(stage) or {}
            log(f"{head}: skipped, finished earlier in {stage.dir} ({done.get('seconds', 0):.1f}s)", flush=True)
            records.append({"name": stage.name, "stage": stage.stage, "status": "skipped", "seconds": 0.0,
                            "metrics": done.get("metrics", {})})
            _write_records(pipeline, records)
            continue
        config = stage.config
        if status == "rerun" and hasattr(config, "overwrite_output_dir"):
            config = dataclasses.replace(config, overwrite_output_dir=True, resume=False) if hasattr(config, "resume") \
                else dataclasses.replace(config, overwrite_output_dir=True)
        elif status == "resume" and hasattr(config, "resume"):
            config = dataclasses.replace(config, resume=True)
        (stage.dir / "DONE").unlink(missing_ok=True)
        stage.dir.mkdir(parents=True, exist_ok=True)
        log(f"{head}: {'resuming' if status == 'resume' else 'running'} -> {stage.dir}", flush=True)
        began = time.perf_counter()
        try:
            metrics = run_with_card(get_stage(stage.stage), config)  # final/README.md, push_to_hub
        except BaseException:
            records.append({"name": stage.name, "stage": stage.stage, "status": "failed",
                            "seconds": round(time.perf_counter() - began, 3), "metrics": {}})
            _write_records(pipeline, records)
            raise
        seconds = round(time.perf_counter() - began, 3)
        metrics = metrics if isinstance(metrics, dict) else {}
        (stage.dir / "DONE").write_text(json.dumps({"hash": stage.hash, "seconds": seconds, "metrics": metrics},
                                                   default=str), encoding="utf-8")
        records.append({"name": stage.name, "stage": stage.stage, "status": "done", "seconds": seconds, "metrics": metrics})
        _write_records(pipeline, records)
        log(f"{head}: done in {seconds:.1f}s", flush=True)
    return records


FILE_FORMAT = """\
FILE.yaml (a recipe's file is one; copy one from {recipes_dir}):
  output_dir: runs/my-pipeline     # the run directory
  vars: {{pairs: null}}              # optional; null: must be given as pairs=VALUE
  defaults: {{model: embedded}}      # optional; for every stage whose config has the key
  stages:                          # run in order
    - name: sft                    # unique; its directory is <output_dir>/<name>
      stage: sft                   # any posttrain stage
      config: {{dataset: task:sentiment, max_steps: 100}}  # as in `posttrain sft --help`
    - name: dpo
      stage: dpo
      preset: ipo                  # optional: any --preset of the stage
      config: {{model: "${{sft.final}}", dataset: "${{pairs}}"}}
  A string may refer to ${{output_dir}}, ${{VAR}}, or an earlier stage's ${{NAME.final}} or
  ${{NAME.output_dir}}."""


def usage(width: int | None = None) -> str:
    """`posttrain pipeline --help`; recipe descriptions wrapped to `width` (default: the terminal's)."""
    width = width or shutil.get_terminal_size(fallback=(100, 24)).columns
    lines = ["usage: posttrain pipeline FILE.yaml|RECIPE [key=value ...]", "",
             "Runs stages in order in one run directory (default: runs/pipeline-NAME); a finished stage is skipped on re-run.",
             "Overrides: output_dir=DIR, force=true, VAR=VALUE, defaults.KEY=VALUE, STAGE.KEY=VALUE.", "",
             "recipes:"]
    lines += [_recipe_line(name, desc, width) for name, desc in recipes().items()]
    lines += ["", FILE_FORMAT.format(recipes_dir=RECIPES_DIR)]
    return "\n".join(lines)


def _recipe_line(name: str, description: str, width: int) -> str:
    """`  name         description`, the description wrapped under itself (never cut)."""
    first = f"  {name:<12} "
    return textwrap.fill(description, width=max(width, len(first) + 40), initial_indent=first,
                         subsequent_indent=" " * len(first), break_on_hyphens=False)


def pipeline_command(args: list[str]) -> int:
    """The CLI entry: `args` = [FILE.yaml|RECIPE, key=value, ...]."""
    if not args or args[0] in ("--help", "-h") or "--help" in args or "-h" in args:
        print(usage())
        return 0 if args else 2
    pipeline = load_pipeline(args[0], args[1:])
    run_pipeline(pipeline)
    return 0
