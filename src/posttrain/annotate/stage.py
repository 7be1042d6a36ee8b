"""`posttrain annotate key=value ...`: the annotation stage (create → label → export) in one run directory.

    posttrain annotate model=runs/sft/final dataset=task:sentiment prompts=64 annotators=[ana,ben] overlap=2
    posttrain annotate model=runs/sft/final label_with=scripted        # CI: labelled by the task's reward

The project (annotations.sqlite, tokens.json) lives in output_dir. With `label_with=people` the app is
served on host:port until every item has its `overlap` labels (people log in with the tokens in
output_dir/tokens.json; `posttrain annotate status project=OUTPUT_DIR` shows progress); Ctrl-C stops
it with every acknowledged label kept, and running the same command again resumes. A project already
in output_dir is always resumed, never replaced, whatever the options now say (its labels are
people's work): to start over, remove the directory or choose another. With
`label_with=scripted` the annotators and admins are scripted clients of the same HTTP API that label
by `reward_funcs` (scripted.py). Then `final/` gets preferences.jsonl (+ rankings.jsonl for
mode=ranking) and summary.json, so a pipeline reads `${annotate.final}/preferences.jsonl`.

The parts on their own: `posttrain annotate create|serve|export|status` (see `--help` of each).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from posttrain.annotate.commands import ItemOptions, ServeOptions, create_project_at, export_to, require_app_packages
from posttrain.config import option
from posttrain.options import RewardOptions

LABELLERS = ("people", "scripted")


@dataclass
class AnnotateConfig(ItemOptions, ServeOptions, RewardOptions):
    output_dir: str = option("runs/annotate", "Run directory: the project (annotations.sqlite, tokens.json), config.yaml, metrics.jsonl, final/.")
    database: str | None = option(None, "SQLAlchemy URL of the project's database (default: OUTPUT_DIR/annotations.sqlite).")
    label_with: str = option("people", "Who labels: people (serve the app until every item is done) or scripted (clients that label by reward_funcs).", choices=LABELLERS)
    tie_margin: float = option(0.0, "label_with=scripted, scripted_beta=0: a reward gap at most this is labelled a tie.")
    scripted_beta: float = option(0.0, "label_with=scripted: 0 labels by the reward exactly; > 0 each scripted person errs, choosing A over B with P = sigmoid(beta (r_A - r_B)).")
    min_labels: int = option(1, "Export only items with at least this many standing labels.")
    overwrite_output_dir: bool = option(False, "Allow writing into an output_dir whose labels were already exported (final/).")


def scripted_scorer(config: AnnotateConfig, engine):
    """score(item_id, completions) -> rewards, by reward_funcs with the item's prompt and hidden columns."""
    from sqlalchemy import select

    from posttrain.annotate.store import items, reading
    from posttrain.methods.best_of_n import completion_value
    from posttrain.rewards import RewardFunctions

    rewards = RewardFunctions.from_options(config, config.dataset)

    def score(item_id: int, completions: list[str]) -> list[float]:
        with reading(engine) as conn:
            item = conn.execute(select(items.c.prompt, items.c.hidden).where(items.c.id == item_id)).one()
        k = len(completions)
        conversational = isinstance(item.prompt, list)
        values = rewards([item.prompt] * k, [completion_value(c, conversational) for c in completions],
                         {key: [value] * k for key, value in item.hidden.items()}).total
        return [float("-inf") if v is None else v for v in values]

    return score


def _label_by_script(config: AnnotateConfig, engine, base_url: str, tokens: dict[str, str]) -> None:
    """The scripted people take turns, one item each per round, so the same seed gives the same labels
    (the load test is where they label at once)."""
    from posttrain.annotate.scripted import Client, label_one

    score = scripted_scorer(config, engine)
    people = {name: Client(base_url, name, token) for name, token in tokens.items()}
    while people:
        for name in list(people):
            if label_one(people[name], name, score, config.mode, config.tie_margin, config.scripted_beta, config.seed) is None:
                del people[name]


def _wait_for_people(engine, base_url: str, tokens_file: Path) -> None:
    from posttrain.annotate.status import project_status

    print(f"annotate: labelling page at {base_url}  (log-in tokens: {tokens_file}); waiting until every item is labelled",
          flush=True)
    shown = None
    while True:
        status = project_status(engine)
        line = f"annotate: {status['complete']}/{status['items']} items complete, {status['labels']} labels"
        if line != shown:
            print(line, flush=True)
            shown = line
        if status["complete"] >= status["items"]:
            return
        time.sleep(2)


def run_annotate(config: AnnotateConfig) -> dict:
    from posttrain.annotate.app import make_app
    from posttrain.annotate.server import background_server
    from posttrain.annotate.store import TOKENS_FILE, database_url, open_engine
    from posttrain.train.rundir import atomic_dir, check_no_final, run_dir, write_config

    require_app_packages()
    config.validate()
    run = run_dir(config.output_dir)
    check_no_final(run, config.overwrite_output_dir, "exported labels")
    url = database_url(config.output_dir, config.database)
    tokens_file = run.root / TOKENS_FILE
    if tokens_file.is_file():
        print(f"annotate: resuming the project in {run.root}")
    else:
        create_project_at(config, run.root, url)
    write_config(run, config)
    engine = open_engine(url)
    tokens = json.loads(tokens_file.read_text(encoding="utf-8"))
    port = 0 if config.label_with == "scripted" else config.port
    with background_server(make_app(engine, config.lease_minutes * 60), config.host, port) as base_url:
        if config.label_with == "scripted":
            _label_by_script(config, engine, base_url, tokens)
        else:
            _wait_for_people(engine, base_url, tokens_file)
    with atomic_dir(run.final) as tmp:
        summary = export_to(engine, Path(tmp), config.min_labels)
    print(f"annotate: wrote {run.final / 'preferences.jsonl'}" + (" and rankings.jsonl" if config.mode == "ranking" else ""))
    run.metrics.write_text(json.dumps({"step": 0, **summary}) + "\n", encoding="utf-8")
    return summary

