"""`posttrain annotate create|serve|export|status`: help, item versions, and each bad input as one line, exit 2."""

from __future__ import annotations

import json
import socket

import pytest

from conftest import write_jsonl
from posttrain.cli import main

pytest.importorskip("fastapi", reason="posttrain[annotate] is not installed (fastapi, uvicorn, sqlalchemy)")


@pytest.fixture
def samples(tmp_path):
    return write_jsonl(tmp_path / "s.jsonl", [{"id": f"r{i}", "prompt": f"p{i}", "completions": [f"a{i}", f"b{i}"]} for i in range(3)])


def _one_line_error(capfd, code: int, *fragments: str) -> None:
    err = capfd.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_help_of_the_stage_names_the_subcommands_and_each_subcommand_lists_its_options(capfd):
    assert main(["annotate", "--help"]) == 0
    out = capfd.readouterr().out
    assert "posttrain annotate create|serve|export|status" in out and "label_with" in out
    for name, option in (("create", "overlap"), ("serve", "lease_minutes"), ("export", "min_labels"), ("status", "database")):
        assert main(["annotate", name, "--help"]) == 0
        out = capfd.readouterr().out
        assert out.startswith(f"usage: posttrain annotate {name}") and option in out


def test_create_twice_append_and_a_changed_item_becomes_a_new_version(tmp_path, samples, capfd):
    from sqlalchemy import select

    from posttrain.annotate.store import database_url, items, open_engine

    project = tmp_path / "p"
    assert main(["annotate", "create", f"project={project}", f"samples={samples}"]) == 0
    out = capfd.readouterr().out
    tokens = json.loads((project / "tokens.json").read_text())
    assert set(tokens) == {"annotator", "admin"} and all(tokens[name] in out for name in tokens)
    assert (project / "tokens.json").stat().st_mode & 0o077 == 0  # only the owner reads the tokens
    _one_line_error(capfd, main(["annotate", "create", f"project={project}", f"samples={samples}"]), "append=true")
    changed = write_jsonl(tmp_path / "changed.jsonl", [{"id": "r0", "prompt": "p0", "completions": ["a0 fixed", "b0"]},
                                                       {"id": "r9", "prompt": "p9", "completions": ["a9", "b9"]}])
    assert main(["annotate", "create", f"project={project}", f"samples={changed}", "append=true"]) == 0
    assert "1 new item(s), 1 updated, 0 unchanged" in capfd.readouterr().out
    with open_engine(database_url(str(project))).connect() as conn:
        versions = dict(conn.execute(select(items.c.key, items.c.version)).all())
    assert versions == {"r0": 2, "r1": 1, "r2": 1, "r9": 1}


def test_a_missing_project_a_taken_port_an_empty_export_and_a_typo_are_one_line_each(tmp_path, samples, capfd):
    project = tmp_path / "p"
    _one_line_error(capfd, main(["annotate", "serve", f"project={tmp_path / 'nope'}"]), "no annotation project", "annotate create")
    _one_line_error(capfd, main(["annotate", "status", f"project={tmp_path / 'nope'}"]), "no annotation project")
    _one_line_error(capfd, main(["annotate", "crate", f"project={project}"]), "unknown annotate subcommand 'crate'", "create")
    _one_line_error(capfd, main(["annotate", "export", f"project={project}", "min_label=2"]), "min_label")
    assert main(["annotate", "create", f"project={project}", f"samples={samples}"]) == 0
    capfd.readouterr()
    _one_line_error(capfd, main(["annotate", "export", f"project={project}"]), "no item has 1 standing label")
    assert not (project / "export").exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_error(capfd, main(["annotate", "serve", f"project={project}", f"port={port}"]), f"port {port}", "port=N")
    _one_line_error(capfd, main(["annotate", "create", f"project={tmp_path / 'q'}", f"samples={samples}",
                                 "database=postgresql+nosuchdriver://u@h/db"]), "database=", "cannot be opened")
    assert not (tmp_path / "q").exists()


def test_status_prints_each_persons_progress(tmp_path, samples, capfd):
    project = tmp_path / "p"
    assert main(["annotate", "create", f"project={project}", f"samples={samples}", "annotators=[ana,ben]", "overlap=2"]) == 0
    capfd.readouterr()
    assert main(["annotate", "status", f"project={project}"]) == 0
    out = capfd.readouterr().out
    assert "items complete: 0/3" in out and "n/a (no item has 2 labels yet)" in out
    assert [line.split()[0] for line in out.splitlines()[-3:]] == ["ana", "ben", "admin"]
