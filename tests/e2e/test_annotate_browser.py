"""The labelling page as a person uses it, in a real headless Chromium (Playwright driving the system's
browser): log in, label with the mouse and the keyboard, comment, undo, skip, rank K by keyboard and by
drag, the admin view, a phone-width screen, and a completion that tries to run a script."""

from __future__ import annotations

import json
import shutil

import pytest

import annotate_servers as kit
from conftest import REPO, run_cli, write_jsonl

pytestmark = kit.needs_the_app
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
if CHROMIUM is None:
    pytest.skip("no Chromium on PATH (apt-get install chromium)", allow_module_level=True)
expect = sync_api.expect
expect.set_options(timeout=15_000)  # 2 busy CI cores: a page may take seconds to answer

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> I liked it.'
MARKDOWN = "A **fine** film.\n\n```python\nprint('<b>not bold</b>')\n```\n\n- tense\n- short"
PEOPLE = ["ana", "ben", "cy", "dee", "eve"]  # one per test, so the tests share a server without sharing a queue


@pytest.fixture(scope="module")
def pairwise(tmp_path_factory):
    """A pairwise project served for the module: (base URL, tokens, project dir)."""
    root = tmp_path_factory.mktemp("browser")
    rows = [{"prompt": "Review the film *Heat*.", "completions": [MARKDOWN, HOSTILE]}]
    rows += [{"prompt": f"Review film number {i}.", "completions": [f"Film {i} is good.", f"Film {i} is bad."]} for i in range(5)]
    project, tokens = _create(root, rows, "pairwise", PEOPLE)
    server = kit.Server(project).start()
    yield server.url, tokens, project
    server.kill()


def _create(root, rows, mode, people):
    samples = write_jsonl(root / "samples.jsonl", rows)
    project = root / "project"
    done = run_cli("annotate", "create", f"project={project}", f"samples={samples}", f"mode={mode}", f"num_samples={len(rows[0]['completions'])}",
                   f"annotators=[{','.join(people)}]", "admins=[boss]", f"overlap={len(people) + 1}")
    assert done.returncode == 0, done.stderr
    return project, json.loads((project / "tokens.json").read_text())


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.errors, page.requested = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("request", lambda request: page.requested.append(request.url))
    yield page
    context.close()


def log_in(page, url, name, token):
    page.goto(url + "/")
    page.wait_for_url("**/login")
    page.fill("#name", name)
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(url + "/")
    expect(page.locator("#progress")).to_contain_text(" done · ")  # the first item is on the page


def progress(page, text):
    expect(page.locator("#progress")).to_have_text(text)


def export(project, tmp_path) -> list[dict]:
    done = run_cli("annotate", "export", f"project={project}", f"output={tmp_path}")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in (tmp_path / "preferences.jsonl").read_text().splitlines()]


def test_a_wrong_token_is_refused_and_the_right_one_shows_the_first_item(page, pairwise):
    url, tokens, _ = pairwise
    page.goto(url + "/")
    page.wait_for_url("**/login")
    page.fill("#name", "ana")
    page.fill("#token", "not-the-token")
    page.click("#login")
    expect(page.locator("#login-error")).to_have_text("Unknown name or wrong token.")
    page.fill("#token", tokens["ana"])
    page.click("#login")
    expect(page.locator("#prompt")).to_contain_text("Review the film Heat.")
    expect(page.locator("#completions .completion")).to_have_count(2)
    progress(page, "0 done · 6 left")
    expect(page.locator("#whoami")).to_have_text("ana (annotator)")
    assert page.errors == []
    # no internet needed: every script, style and call went to the app itself
    assert page.requested and all(address.startswith(url + "/") for address in page.requested), page.requested


def test_a_completion_that_tries_to_run_a_script_shows_as_text_and_markdown_renders(page, pairwise):
    url, tokens, _ = pairwise
    log_in(page, url, "ben", tokens["ben"])
    completions = page.locator("#completions")
    expect(completions).to_contain_text("<script>window.__pwned=1</script>")
    assert page.evaluate("window.__pwned") is None
    assert completions.locator("script, img").count() == 0
    expect(completions.locator("strong")).to_have_text("fine")
    expect(completions.locator("pre > code.language-python")).to_have_text("print('<b>not bold</b>')")
    assert completions.locator("b").count() == 0 and completions.locator("li").count() == 2
    expect(page.locator("#prompt em")).to_have_text("Heat")


def test_mouse_and_keyboard_labels_undo_skip_and_the_comment_box(page, pairwise, tmp_path):
    url, tokens, project = pairwise
    log_in(page, url, "cy", tokens["cy"])
    progress(page, "0 done · 6 left")
    a_text = page.locator("#completions .completion .body").first.text_content()
    page.click("#choose-a")  # the mouse: A is better
    progress(page, "1 done · 5 left")
    page.keyboard.press("3")  # the keyboard: B is better
    progress(page, "2 done · 4 left")
    page.click("#undo")  # the button takes the B label back: its item is shown again
    progress(page, "1 done · 5 left")
    page.keyboard.press("2")  # tie, this time
    progress(page, "2 done · 4 left")
    page.keyboard.press("u")
    progress(page, "1 done · 5 left")
    page.click("#comment")
    page.keyboard.type("13 close call")  # digits typed in the comment box do not label
    progress(page, "1 done · 5 left")
    page.click("#choose-tie")
    progress(page, "2 done · 4 left")
    page.keyboard.press("s")  # skip: another item, nothing labelled
    progress(page, "2 done · 3 left")
    mine = [r for r in export(project, tmp_path) if "cy" in r["annotators"]]
    assert len(mine) == 2  # the undone labels are not exported, the skipped item was never labelled
    clicked = [r for r in mine if r["label"] == 1.0]
    # A (as shown to cy, in their own random order) is `chosen`: its text as the page rendered it
    assert len(clicked) == 1 and clicked[0]["chosen"].replace("*", "").startswith(a_text.strip()[:10])
    tie = [r for r in mine if r["label"] == 0.5]
    assert len(tie) == 1 and tie[0]["comments"] == ["13 close call"]
    assert page.errors == []


def test_labelling_everything_shows_all_done(page, pairwise):
    url, tokens, _ = pairwise
    log_in(page, url, "dee", tokens["dee"])
    for left in range(5, -1, -1):
        page.keyboard.press("1")
        progress(page, f"{6 - left} done · {left} left")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#empty")).to_contain_text("All done")


def test_a_phone_width_screen_has_no_sideways_scroll(browser, pairwise):
    url, tokens, _ = pairwise
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, url, "eve", tokens["eve"])
    expect(page.locator("#completions .completion")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for button in ("#choose-a", "#choose-tie", "#choose-b", "#skip"):
        expect(page.locator(button)).to_be_visible()
    boxes = [page.locator(".completion").nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]  # stacked, not side by side
    page.tap("#choose-b")
    progress(page, "1 done · 5 left")
    context.close()


def test_the_admin_sees_everyones_progress_and_an_annotator_may_not(page, pairwise):
    url, tokens, _ = pairwise
    log_in(page, url, "ana", tokens["ana"])
    page.goto(url + "/admin")
    expect(page.locator("#status")).to_contain_text("Not allowed")
    page.click("#logout")
    page.wait_for_url("**/login")
    log_in(page, url, "boss", tokens["boss"])
    page.goto(url + "/admin")
    expect(page.locator("#annotators tbody tr")).to_have_count(len(PEOPLE) + 1)
    expect(page.locator("#annotators tbody")).to_contain_text("dee")
    expect(page.locator("#complete")).to_contain_text("/ 6")


def test_a_post_without_the_csrf_header_is_refused(page, pairwise):
    url, tokens, _ = pairwise
    log_in(page, url, "ana", tokens["ana"])  # the session cookie is set; the header is what is missing
    reply = page.request.post(url + "/api/skip", data={"item_id": 1})
    assert reply.status == 403 and "X-CSRF-Token" in reply.json()["detail"]


def test_ranking_k_completions_by_keyboard_and_by_drag(page, tmp_path):
    rows = [{"prompt": f"Rank the replies {i}.", "completions": [f"first {i}", f"second {i}", f"third {i}"]} for i in range(2)]
    project, tokens = _create(tmp_path, rows, "ranking", ["ana"])
    server = kit.Server(project).start()
    try:
        log_in(page, server.url, "ana", tokens["ana"])
        ranking = page.locator("#ranking li")
        expect(ranking).to_have_count(3)
        order = [ranking.nth(i).locator("span").text_content() for i in range(3)]  # display order, shuffled by the server
        page.keyboard.press("3")  # pick the third and move it to the top
        page.keyboard.press("ArrowUp")
        page.keyboard.press("ArrowUp")
        page.keyboard.press("Enter")
        progress(page, "1 done · 1 left")
        first_ranked = [order[2], order[0], order[1]]
        order = [ranking.nth(i).locator("span").text_content() for i in range(3)]
        ranking.nth(0).drag_to(ranking.nth(2))  # the mouse: the top one goes to the bottom
        dragged = [ranking.nth(i).locator("span").text_content() for i in range(3)]
        assert dragged == [order[1], order[2], order[0]]
        page.click("#submit-ranking")
        progress(page, "2 done · 0 left")
        done = run_cli("annotate", "export", f"project={project}", f"output={tmp_path / 'out'}")
        assert done.returncode == 0, done.stderr
        rankings = [json.loads(line) for line in (tmp_path / "out" / "rankings.jsonl").read_text().splitlines()]
        for row, wanted in zip(rankings, (first_ranked, dragged)):
            by_rank = sorted(range(3), key=lambda i: row["ranking"][i])
            assert [row["completions"][i] for i in by_rank] == wanted
    finally:
        server.kill()


def test_screenshot_for_the_readme(page, pairwise):
    """docs/img/annotate.png, the README's picture of the page (written when POSTTRAIN_SCREENSHOT=1)."""
    import os

    url, tokens, _ = pairwise
    log_in(page, url, "boss", tokens["boss"])
    page.keyboard.press("g")
    expect(page.locator("#guidelines")).to_be_visible()
    page.fill("#comment", "Close call: both are short.")
    if os.environ.get("POSTTRAIN_SCREENSHOT") == "1":
        page.screenshot(path=str(REPO / "docs" / "img" / "annotate.png"))
