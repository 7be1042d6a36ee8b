"""What the browser tests share: a served project, a page on it that fails on any script error, CSP
refusal or request outside the app, logging in, and exporting (tests/e2e/test_annotate_browser*.py)."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from annotate_servers import Server
from conftest import run_cli, write_jsonl

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=10_000)  # 2 busy CI cores: a page may take seconds to answer
    return playwright_expect(locator)


def serve_project(root: Path, rows: list[dict], annotators: list[str], overlap: int, *options: str):
    """`annotate create` on `rows` and `annotate serve` on a free port: (server, {name: token}, project dir)."""
    root.mkdir(parents=True, exist_ok=True)
    samples = write_jsonl(root / "samples.jsonl", rows)
    project = root / "project"
    done = run_cli("annotate", "create", f"project={project}", f"samples={samples}", f"annotators=[{','.join(annotators)}]",
                   "admins=[boss]", f"overlap={overlap}", *options)
    assert done.returncode == 0, done.stderr
    return Server(project).start(), json.loads((project / "tokens.json").read_text()), project


@contextmanager
def served(root: Path, rows: list[dict], annotators: list[str], overlap: int, *options: str):
    server, tokens, project = serve_project(root, rows, annotators, overlap, *options)
    try:
        yield server, tokens, project
    finally:
        server.stop()


@contextmanager
def open_page(browser, server: Server, width: int = 1280, height: int = 800, phone: bool = False):
    """A fresh browser context (its own cookies) on the server. Fails on a script error, a CSP refusal, or
    a request to anywhere but the app (no CDN, no font service: it must work offline)."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=server.url,
                                  is_mobile=phone, has_touch=phone)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None)
    page.on("request", lambda request: None if request.url.startswith(server.url + "/") else problems.append(request.url))
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


def log_in(page, name: str, token: str) -> None:
    page.goto("/")
    page.wait_for_url("**/login")  # the labelling page sends a stranger to the log-in page
    page.fill("#name", name)
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("#progress")).to_contain_text("done")


def export(project: Path, output: Path) -> dict[str, list[dict]]:
    """`annotate export`: {file name: rows}."""
    done = run_cli("annotate", "export", f"project={project}", f"output={output}")
    assert done.returncode == 0, done.stderr
    return {path.name: [json.loads(line) for line in path.read_text().splitlines()] for path in output.glob("*.jsonl")}
