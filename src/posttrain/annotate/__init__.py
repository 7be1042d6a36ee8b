"""`posttrain annotate`: people label a policy's completions in a web app; the labels feed `rm` and `dpo`.

    posttrain annotate create project=runs/labels model=runs/sft/final dataset=task:sentiment num_samples=2 annotators=[ana,ben]
    posttrain annotate serve project=runs/labels            # http://127.0.0.1:8000, each person logs in with a token
    posttrain annotate status project=runs/labels
    posttrain annotate export project=runs/labels           # preferences.jsonl (+ rankings.jsonl) for rm / dpo

Modules: `store` (the database schema), `queue` (who labels what: overlap, leases, idempotent
submits, undo), `items` (a project's items from a file or a policy's samples), `export` (labels →
preference / ranking rows with per-item agreement), `app` (the FastAPI app and its pages in
`static/`), `scripted` (an annotator that labels through the HTTP API by a reward: CI and the
`human_feedback` recipe), `commands` (the CLI subcommands) and `stage` (the pipeline stage).
"""
