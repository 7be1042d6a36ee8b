"""`posttrain annotate create|serve|export|status`: the subcommands, their configs and runners.

`posttrain annotate key=value ...` with no subcommand is the `annotate` stage (stage.py): create,
collect the labels (people through the app, or scripted annotators), export, in one run directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from posttrain.config import option
from posttrain.errors import ConfigError
from posttrain.options import GenerationBatchOptions, ModelOptions, SamplingOptions, TopPSamplingOptions, restate

DEFAULT_GUIDELINES = ("Read the prompt, then each response. Choose the response that answers the prompt better: "
                      "correct, helpful, honest, harmless, and clearly written. Choose **tie** only when neither is "
                      "better. Skip an item you cannot judge.")


@dataclass
class ProjectOptions:
    project: str = option("runs/annotate", "Project directory: annotations.sqlite (unless database= is set), tokens.json, export/.")
    database: str | None = option(None, "SQLAlchemy URL of the project's database, e.g. postgresql+psycopg://user:pass@host/labels (default: PROJECT/annotations.sqlite).")

    def database_url(self, project_dir: str | None = None) -> str:
        from posttrain.annotate.store import database_url

        return database_url(project_dir or self.project, self.database)


@dataclass
class ItemOptions(GenerationBatchOptions, TopPSamplingOptions, ModelOptions):
    samples: str | None = option(None, "A file of items: rows {prompt, completions: [K]} or {prompt, chosen, rejected}. Unset: sample from `model` on `dataset`.")
    dataset: str = option("task:sentiment", "Prompts to sample completions for when samples is unset: task:NAME[:split], a file or dataset.")
    dataset_split: str | None = option(None, "Split to read from a DatasetDict directory or hub dataset (default: train).")
    prompts: int = option(64, "Prompts drawn (seeded) from dataset when sampling; 0 uses every prompt.")
    num_samples: int = option(2, "K: completions sampled per prompt (2 for pairwise, K >= 2 for mode=ranking).")
    max_new_tokens: int = restate(SamplingOptions, "max_new_tokens", default=64)
    mode: str = option("pairwise", "pairwise: A better / tie / B better; ranking: order all K completions best to worst.", choices=("pairwise", "ranking"))
    overlap: int = option(1, "Labels wanted per item, each from a different person (>= 2 measures agreement).")
    annotators: list[str] = option(["annotator"], "Names of the people who label; each gets a login token (tokens.json).")
    admins: list[str] = option(["admin"], "Names with the admin role: they label too, and see progress and agreement at /admin.")
    guidelines: str = option(DEFAULT_GUIDELINES, "Guidelines shown beside every item: markdown text, or a .md/.txt file.")
    name: str | None = option(None, "Project name shown on the page (default: the project directory's name).")

    def validate(self) -> None:
        if self.overlap < 1 or self.prompts < 0:
            raise ConfigError(f"overlap must be >= 1 and prompts >= 0, got {self.overlap} and {self.prompts}")
        if self.num_samples < 2 or (self.mode == "pairwise" and self.num_samples != 2):
            raise ConfigError(f"num_samples is {self.num_samples}: pairwise compares exactly 2, ranking needs >= 2")
        people = list(self.annotators) + list(self.admins)
        if not people or len(set(people)) != len(people) or any(not p.strip() or len(p) > 100 for p in people):
            raise ConfigError(f"annotators + admins must be distinct, non-empty names (<= 100 characters), got {people}")
        if self.overlap > len(people):
            raise ConfigError(f"overlap={self.overlap} needs at least that many people; annotators + admins has {len(people)}")


@dataclass
class CreateConfig(ProjectOptions, ItemOptions):
    append: bool = option(False, "Add items to an existing project (a row whose `id` is known and whose content changed becomes a new version).")


@dataclass
class ServeOptions:
    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0 to let other machines in: put it behind HTTPS).")
    port: int = option(8000, "Port to listen on (0: any free port).")
    lease_minutes: float = option(30.0, "An item handed out and not labelled within this many minutes goes to someone else.")


@dataclass
class ServeConfig(ProjectOptions, ServeOptions):
    pass


@dataclass
class ExportConfig(ProjectOptions):
    output: str | None = option(None, "Directory for preferences.jsonl (+ rankings.jsonl, summary.json); default: PROJECT/export.")
    min_labels: int = option(1, "Leave out items with fewer standing labels than this.")


@dataclass
class StatusConfig(ProjectOptions):
    pass


def require_app_packages() -> None:
    """A one-line error naming the extra when the app's packages are not installed."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "sqlalchemy") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"posttrain annotate needs {', '.join(missing)}: pip install 'posttrain[annotate]'")


def create_items(config: ItemOptions) -> tuple[list[dict], str]:
    """(item rows, where they came from): the samples file, or K samples per prompt from the policy."""
    from posttrain.annotate.items import item_rows

    if config.samples:
        from posttrain.tasks.sources import load_rows

        return item_rows(load_rows(config.samples), config.samples, config.mode), config.samples
    import torch

    from posttrain.data.sources import draw_rows
    from posttrain.generation import SamplingParams
    from posttrain.methods.best_of_n import completion_value, sample_and_score
    from posttrain.train.scaffold import load_model_for, load_prompt_rows, load_tokenizer_for

    rows = draw_rows(load_prompt_rows(config.dataset, config.dataset_split, "annotation needs"), config.prompts, config.seed)
    tokenizer, model = load_tokenizer_for(config), load_model_for(config)
    torch.manual_seed(config.seed)
    params = SamplingParams(**config.sampling_kwargs(seed=config.seed))
    groups = sample_and_score(model, tokenizer, rows, None, config.num_samples, params, config.generation_batch_size)
    out = []
    for group in groups:
        texts = [c.text for c in group.candidates]
        if len({t.strip() for t in texts}) < len(texts) or not all(t.strip() for t in texts):
            continue  # identical or empty completions: nothing for a person to choose between
        conversational = isinstance(group.row["prompt"], list)
        hidden = {k: v for k, v in group.row.items() if k not in ("prompt", "completion")}
        out.append({**hidden, "prompt": group.row["prompt"], "completions": [completion_value(t, conversational) for t in texts]})
    if not out:
        raise ConfigError(f"every prompt's {config.num_samples} samples were identical or empty; raise temperature or max_new_tokens")
    return item_rows(out, f"samples of {config.model}", config.mode), f"{config.model} on {config.dataset}"


def create_project_at(config: ItemOptions, project_dir: Path, url: str, append: bool = False) -> tuple[dict, dict]:
    """Create (or with `append`, extend) the project; ({name: token} of new people, item counts)."""
    from posttrain.annotate.items import add_items, create_project, read_guidelines, write_tokens
    from posttrain.annotate.store import open_engine

    config.validate()
    guidelines = read_guidelines(config.guidelines)
    exists = url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).is_file()
    if exists and not append:
        raise ConfigError(f"{project_dir} already holds an annotation project; add items with append=true or choose another project dir")
    rows, source = create_items(config)  # every check and the sampling before anything is written
    engine = open_engine(url, must_exist=False)
    project_dir.mkdir(parents=True, exist_ok=True)
    tokens = {}
    if not append or not exists:
        people = {**{name: "annotator" for name in config.annotators}, **{name: "admin" for name in config.admins}}
        tokens = create_project(engine, config.name or project_dir.resolve().name, config.mode, config.overlap, guidelines, people)
        write_tokens(project_dir, tokens)
    counts = add_items(engine, rows)
    print(f"annotate: {counts['added']} new item(s), {counts['updated']} updated, {counts['unchanged']} unchanged, from {source}")
    return tokens, counts


def run_create(config: CreateConfig) -> dict:
    require_app_packages()
    tokens, counts = create_project_at(config, Path(config.project), config.database_url(), config.append)
    if tokens:
        print(f"annotate: login tokens (also in {Path(config.project) / 'tokens.json'}, readable only by you):")
        for person, token in tokens.items():
            print(f"  {person}: {token}")
    print(f"annotate: next: posttrain annotate serve project={config.project}")
    return counts


def run_serve(config: ServeConfig) -> dict:
    require_app_packages()
    from posttrain.annotate.app import make_app
    from posttrain.annotate.server import serve_forever
    from posttrain.annotate.store import open_engine

    engine = open_engine(config.database_url())
    serve_forever(make_app(engine, config.lease_minutes * 60), config.host, config.port)
    return {}


def export_to(engine, output: Path, min_labels: int = 1) -> dict:
    """Write preferences.jsonl (+ rankings.jsonl) and summary.json into `output`; the summary."""
    from posttrain.annotate.export import export_rows
    from posttrain.annotate.store import read_project
    from posttrain.data.sources import write_jsonl

    mode = read_project(engine)["mode"]
    preferences, rankings, summary = export_rows(engine, mode, min_labels)
    if not preferences:
        raise ConfigError(f"no item has {min_labels} standing label(s) yet; label some first (or lower min_labels)")
    output.mkdir(parents=True, exist_ok=True)
    write_jsonl(output / "preferences.jsonl", preferences)
    if mode == "ranking":
        write_jsonl(output / "rankings.jsonl", rankings)
    (output / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print("annotate: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return summary


def run_export(config: ExportConfig) -> dict:
    require_app_packages()
    from posttrain.annotate.store import open_engine

    output = Path(config.output or Path(config.project) / "export")
    summary = export_to(open_engine(config.database_url()), output, config.min_labels)
    print(f"annotate: wrote {output / 'preferences.jsonl'}" + (f" and {output / 'rankings.jsonl'}" if (output / "rankings.jsonl").exists() else ""))
    return summary


def run_status(config: StatusConfig) -> dict:
    require_app_packages()
    from posttrain.annotate.status import format_status, project_status
    from posttrain.annotate.store import open_engine

    status = project_status(open_engine(config.database_url()))
    print(format_status(status))
    return status


SUBCOMMANDS = {
    "create": (CreateConfig, run_create, "Create a project from a samples file or a policy's samples; print the login tokens."),
    "serve": (ServeConfig, run_serve, "Serve the labelling app (FastAPI + uvicorn) on host:port."),
    "export": (ExportConfig, run_export, "Write the labels as preference rows (+ K-wise rankings) with per-item agreement."),
    "status": (StatusConfig, run_status, "Print progress per annotator and the mean agreement."),
}
