"""A project's items and people: from a file of prompts + completions, or a policy's samples.

A row is `{"prompt", "completions": [K texts]}` (K-wise or, with K = 2, pairwise) or
`{"prompt", "chosen", "rejected"}` (an existing pair, re-labelled by people; the page shows the two
in random order anyway). Other columns are kept hidden: export carries them along and a scripted
annotator's reward may read them. A row's `id` column names the item; re-adding a row with the
same id and new content makes a new version of the item (its earlier labels stay, marked with the
version they were given for, and it goes back into the queues).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from posttrain.annotate.queue import now
from posttrain.annotate.store import MODES, TOKENS_FILE, annotators, assignments, items, metadata, project, writing
from posttrain.data.values import check_text
from posttrain.errors import ConfigError, data_error

SHOWN_COLUMNS = ("prompt", "completions", "chosen", "rejected", "id")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def item_rows(rows: list[dict], source: str, mode: str) -> list[dict]:
    """Validated items {key, prompt, completions, hidden} from data rows; a DataError names the row."""
    out = []
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise data_error(source, i, "prompt", "missing; an annotation item needs a prompt")
        check_text(row["prompt"], source, i, "prompt", allow_empty=True)
        if "completions" in row:
            completions = row["completions"]
            if not isinstance(completions, list) or len(completions) < 2:
                raise data_error(source, i, "completions", "must be a list of at least 2 completions")
        elif "chosen" in row and "rejected" in row:
            completions = [row["chosen"], row["rejected"]]
        else:
            raise data_error(source, i, "completions", "missing; give 'completions' (a list) or 'chosen' and 'rejected'")
        for completion in completions:
            check_text(completion, source, i, "completions", allow_empty=True)
        if mode == "pairwise" and len(completions) != 2:
            raise data_error(source, i, "completions", f"has {len(completions)} completions; mode=pairwise compares 2 "
                                                       "(use mode=ranking for K-wise rankings)")
        hidden = {k: v for k, v in row.items() if k not in SHOWN_COLUMNS}
        content = json.dumps([row["prompt"], completions], sort_keys=True)
        key = str(row["id"]) if "id" in row else hashlib.sha256(content.encode()).hexdigest()
        out.append({"key": key[:64], "prompt": row["prompt"], "completions": completions, "hidden": hidden})
    return out


def create_project(engine: Engine, name: str, mode: str, overlap: int, guidelines: str,
                   people: dict[str, str]) -> dict[str, str]:
    """Create the schema, the project row and the people ({name: role}); returns {name: token}.
    Tokens are shown once and stored only as hashes."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    metadata.create_all(engine)
    tokens = {person: secrets.token_urlsafe(18) for person in people}
    with writing(engine) as conn:
        if conn.execute(select(project.c.id)).first() is not None:
            raise ConfigError("this database already holds a project; add items with append=true, or choose a new project dir")
        conn.execute(insert(project).values(id=1, name=name, mode=mode, k=0, overlap=overlap, guidelines=guidelines,
                                            created_at=now()))
        for person, role in people.items():
            conn.execute(insert(annotators).values(name=person, role=role, token_hash=hash_token(tokens[person])))
    return tokens


def add_items(engine: Engine, rows: list[dict]) -> dict:
    """Insert new items and new versions of changed ones; {'added', 'updated', 'unchanged'}."""
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    with writing(engine) as conn:
        known = {row.key: row for row in conn.execute(select(items.c.id, items.c.key, items.c.prompt, items.c.completions,
                                                             items.c.version))}
        fresh = []
        for row in rows:
            old = known.get(row["key"])
            if old is None:
                fresh.append({**row, "version": 1, "created_at": now()})
                counts["added"] += 1
            elif [old.prompt, old.completions] != [row["prompt"], row["completions"]]:
                conn.execute(update(items).where(items.c.id == old.id).values(
                    prompt=row["prompt"], completions=row["completions"], hidden=row["hidden"], version=old.version + 1))
                # everyone who had it labels the new version (their old label stays, with its version)
                conn.execute(update(assignments).where(assignments.c.item_id == old.id).values(state="open", leased_at=now()))
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
        if fresh:
            conn.execute(insert(items), fresh)
        k = max((len(r["completions"]) for r in rows), default=0)
        current = conn.execute(select(project.c.k)).scalar_one()
        conn.execute(update(project).values(k=max(k, current)))
    return counts


def write_tokens(project_dir: Path, tokens: dict[str, str]) -> Path:
    """tokens.json ({name: token}) readable by its owner only."""
    path = project_dir / TOKENS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(tokens, handle, indent=1)
    return path


def read_guidelines(value: str) -> str:
    """Guidelines text, or the text of the file it names (.md / .txt)."""
    if value.endswith((".md", ".txt")):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"guidelines file not found: {value}")
        return path.read_text(encoding="utf-8")
    return value
