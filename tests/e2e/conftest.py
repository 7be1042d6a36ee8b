"""Fixtures only end-to-end files use: the annotation app's servers and the system's Chromium (tests/conftest.py
holds what unit and e2e files share)."""

from __future__ import annotations

import pytest


# tests/e2e/test_annotate_load.py, tests/e2e/test_annotate_durability.py: `posttrain annotate serve` subprocesses
@pytest.fixture
def annotate_servers():
    """Start servers with `annotate_servers(project, port=None, *extra_options)`; all are killed at teardown, pass or fail."""
    from annotate_servers import Server

    started: list = []

    def start(project, port: int | None = None, *extra: str):
        started.append(Server(project, port, *extra).start())
        return started[-1]

    yield start
    for server in started:
        server.kill()


# tests/e2e/test_annotate_browser*.py: the system's Chromium, driven by Playwright
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from annotate_pages import CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def failed() -> dict[str, str]:
    """The docs tests' record of a document whose block failed (document -> that block): its later blocks skip."""
    return {}
