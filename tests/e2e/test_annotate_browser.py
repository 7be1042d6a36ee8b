"""The labelling page as a person uses it, in a real headless Chromium (Playwright's sync API driving the
system's browser) against `posttrain annotate serve` subprocesses: log in, label by mouse and keyboard,
undo, skip, comment, guidelines, a submission in flight and its retry, the admin view, a phone-width
screen, CSRF, and a completion that tries to run a script (export and ranking: test_annotate_browser_export.py).

POSTTRAIN_SCREENSHOT=1 also saves the labelling page at 1280x800 to docs/img/annotate.png."""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager

import pytest

from annotate_pages import CHROMIUM, expect, export, log_in, open_page, served
from annotate_servers import MISSING
from conftest import REPO

if MISSING:
    pytest.skip(f"posttrain annotate needs {', '.join(MISSING)}: pip install 'posttrain[annotate]'", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
if CHROMIUM is None:
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH for Playwright to drive", allow_module_level=True)

SCREENSHOT = REPO / "docs" / "img" / "annotate.png"  # where README.md and docs/annotate.md show it
HOSTILE = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">\n\n'
           "Some **bold** advice, then code:\n\n"
           "```python\nprint('" + "a very long line " * 20 + "')\n```\n\n"
           "See https://example.com/" + "path" * 40)
PRIME = {"prompt": "Write a Python function that tells whether a number is prime.",
         "completions": [("Here is a simple version:\n\n```python\ndef is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n"
                          "    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n"
                          "    return True\n```\n\nIt tries every divisor up to **the square root** of `n`."),
                         ("A number is prime when it has *exactly two* divisors:\n\n1. Return False below 2.\n"
                          "2. Try each divisor from 2 up.\n\n```python\ndef is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n```")]}
REVIEW = {"prompt": "Review this reply.", "completions": [HOSTILE, "A plain reply."]}
SHARED_ROWS = [PRIME, REVIEW] + [{"prompt": f"Question {i}: what is {i} + {i}?", "completions": [f"It is {2 * i}.", f"Perhaps {2 * i + 1}."]}
                                 for i in range(6)]
GUIDELINES = "Prefer the **correct** answer.\n\n- Tie only when neither is better.\n- Skip what you cannot judge."
# One person per test, and every person sees every item (overlap = everyone): the tests share a server
# without one test's labels changing what another is shown.
SHARED_PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry", "ivan", "judy", "kim"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The pairwise project most tests share: (server, tokens, project dir)."""
    guidelines = tmp_path_factory.mktemp("guidelines") / "guidelines.md"
    guidelines.write_text(GUIDELINES)
    with served(tmp_path_factory.mktemp("shared"), SHARED_ROWS, SHARED_PEOPLE, len(SHARED_PEOPLE) + 1,
                f"guidelines={guidelines}") as project:
        yield project


@contextmanager
def labelling(browser, shared_project, name: str, width: int = 1280, height: int = 800, phone: bool = False):
    server, tokens, _ = shared_project
    with open_page(browser, server, width, height, phone) as page:
        log_in(page, name, tokens[name])
        yield page


def shown_prompt(page) -> str:
    return page.inner_text("#prompt").strip()


def card_texts(page) -> list[str]:
    return [text.strip() for text in page.locator("#completions .completion .body").all_inner_texts()]


def skip_to(page, prompt: str, key: str = "s") -> None:
    """Skip (or with key="1", label) until the page shows `prompt`: the queue hands items out in its own order."""
    for _ in range(len(SHARED_ROWS)):
        if shown_prompt(page) == prompt:
            return
        before = page.inner_text("#progress")
        page.keyboard.press(key)
        expect(page.locator("#progress")).not_to_have_text(before)
    assert shown_prompt(page) == prompt


def test_log_in_refuses_a_wrong_token_and_then_shows_the_first_item(browser, shared):
    server, tokens, _ = shared
    with open_page(browser, server) as page:
        page.goto("/")
        page.wait_for_url("**/login")
        page.fill("#name", "alice")
        page.fill("#token", "not-the-token")
        page.click("#login")
        expect(page.locator("#login-error")).to_contain_text("wrong token")
        assert page.url.endswith("/login")

        page.fill("#token", tokens["alice"])
        page.click("#login")
        page.wait_for_url(re.compile(r"/$"))
        expect(page.locator("#progress")).to_have_text(f"0 done · {len(SHARED_ROWS)} left")
        expect(page.locator("#whoami")).to_have_text("alice")
        item = page.request.get("/api/next").json()["item"]  # the same item until it is labelled
        row = next(r for r in SHARED_ROWS if r["prompt"] == item["prompt"])
        assert shown_prompt(page) == row["prompt"]
        cards = page.locator("#completions .completion")
        expect(cards).to_have_count(2)
        expect(cards.locator("h3")).to_have_text(["A", "B"])
        for text, completion in zip(card_texts(page), item["completions"]):
            first_line = completion.splitlines()[0].replace("*", "").replace("`", "")
            assert text.startswith(first_line), (text, completion)
        a, b = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
        assert a["y"] == b["y"] and a["x"] + a["width"] <= b["x"], "side by side at 1280 px"
        for button, label in (("#choose-a", "A is better"), ("#choose-tie", "Tie"), ("#choose-b", "B is better")):
            expect(page.locator(button)).to_be_visible()
            expect(page.locator(button)).to_contain_text(label)


def test_label_by_click_and_keys_then_undo_by_button_and_key(browser, shared):
    with labelling(browser, shared, "bob") as page:
        progress = page.locator("#progress")
        n = len(SHARED_ROWS)
        expect(progress).to_have_text(f"0 done · {n} left")
        expect(page.locator("#undo")).to_be_disabled()
        prompts = [shown_prompt(page)]
        page.click("#choose-a")
        expect(progress).to_have_text(f"1 done · {n - 1} left")
        assert shown_prompt(page) != prompts[-1]
        prompts.append(shown_prompt(page))
        page.keyboard.press("3")  # B is better
        expect(progress).to_have_text(f"2 done · {n - 2} left")
        prompts.append(shown_prompt(page))
        page.keyboard.press("2")  # tie
        expect(progress).to_have_text(f"3 done · {n - 3} left")
        assert len(set(prompts + [shown_prompt(page)])) == 4
        assert page.eval_on_selector("#progress-bar", "bar => bar.value / bar.max") == pytest.approx(3 / n)

        page.click("#undo")  # the tie is taken back: its item comes back
        expect(progress).to_have_text(f"2 done · {n - 2} left")
        assert shown_prompt(page) == prompts[2]
        page.keyboard.press("u")  # and then "B is better"
        expect(progress).to_have_text(f"1 done · {n - 1} left")
        assert shown_prompt(page) == prompts[1]
        expect(page.locator("#undo")).to_be_enabled()  # the first label still stands
        page.keyboard.press("Control+z")
        expect(progress).to_have_text(f"0 done · {n} left")
        assert shown_prompt(page) == prompts[0]
        expect(page.locator("#undo")).to_be_disabled()
        page.keyboard.press("a")  # the letter keys label too
        expect(progress).to_have_text(f"1 done · {n - 1} left")


def test_skip_by_button_and_key_moves_on(browser, shared):
    with labelling(browser, shared, "carol") as page:
        n = len(SHARED_ROWS)
        first = shown_prompt(page)
        page.fill("#comment", "about the first item only")
        page.click("#skip")
        expect(page.locator("#progress")).to_have_text(f"0 done · {n - 1} left")
        second = shown_prompt(page)
        expect(page.locator("#comment")).to_have_value("")  # a comment stays with the item it was typed on
        page.keyboard.press("s")
        expect(page.locator("#progress")).to_have_text(f"0 done · {n - 2} left")
        assert len({first, second, shown_prompt(page)}) == 3


def test_a_completion_never_runs_as_html_and_its_markdown_renders(browser, shared):
    with labelling(browser, shared, "dave") as page:
        skip_to(page, REVIEW["prompt"])
        completions = page.locator("#completions")
        hostile = completions.locator(".completion").filter(has_text="window.__pwned")
        expect(hostile).to_have_count(1)
        body = hostile.locator(".body")
        expect(body).to_contain_text('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">')
        page.wait_for_timeout(200)  # time for an image's onerror, had one been made
        assert page.evaluate("typeof window.__pwned") == "undefined"
        expect(completions.locator("script, img, iframe, object")).to_have_count(0)
        expect(body.locator("strong")).to_have_text("bold")
        code = body.locator("pre > code.language-python")
        expect(code).to_contain_text("print('a very long line")
        assert body.locator("pre").evaluate("pre => pre.scrollWidth > pre.clientWidth"), "a long line scrolls in its box"


def test_keys_typed_in_the_comment_stay_there_and_the_comment_goes_with_the_label(browser, shared, tmp_path):
    project = shared[2]
    comment = "1 2 3 a t b s u g: keys typed here are only text"
    with labelling(browser, shared, "erin") as page:
        n = len(SHARED_ROWS)
        prompt = shown_prompt(page)
        page.click("#comment")
        page.keyboard.type(comment)
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#comment")).to_have_value(comment)
        expect(page.locator("#progress")).to_have_text(f"0 done · {n} left")
        expect(page.locator("#guidelines")).to_be_hidden()
        assert shown_prompt(page) == prompt
        page.click("#choose-b")
        expect(page.locator("#progress")).to_have_text(f"1 done · {n - 1} left")
        expect(page.locator("#comment")).to_have_value("")  # the next item starts without it
    row = next(r for r in export(project, tmp_path / "export")["preferences.jsonl"] if r["prompt"] == prompt)
    assert "erin" in row["annotators"] and comment in row["comments"]


def test_guidelines_open_with_the_button_and_the_g_key(browser, shared):
    with labelling(browser, shared, "kim") as page:
        panel, toggle = page.locator("#guidelines"), page.locator("#guidelines-toggle")
        expect(panel).to_be_hidden()
        page.keyboard.press("g")
        expect(panel).to_be_visible()
        expect(panel.locator("strong")).to_have_text("correct")  # the guidelines are markdown
        expect(panel.locator("li")).to_have_count(2)
        expect(toggle).to_have_attribute("aria-expanded", "true")
        toggle.click()
        expect(panel).to_be_hidden()
        expect(toggle).to_have_attribute("aria-expanded", "false")


MARKDOWN_CASES = {  # source -> the HTML its DOM serialises to (attributes other than class left out)
    "# Title\n\nA **b** *i* `c <b>`": '<h1 class="md-heading">Title</h1><p>A <strong>b</strong> <em>i</em> <code>c &lt;b&gt;</code></p>',
    "- one\n- two\n\n1. x\n2. y": "<ul><li>one</li><li>two</li></ul><ol><li>x</li><li>y</li></ol>",
    "```js\nlet a = '<i>';\n```": "<pre><code class=\"language-js\">let a = '&lt;i&gt;';</code></pre>",
    "line one\nline two": "<p>line one<br>line two</p>",
    "<b>not html</b> & 2 * 3 * 4": "<p>&lt;b&gt;not html&lt;/b&gt; &amp; 2 * 3 * 4</p>",
    "**unclosed and *em*": "<p>**unclosed and <em>em</em></p>",
    "| a | table |\n> a quote": "<p>| a | table |<br>&gt; a quote</p>",
}


def test_markdown_renders_its_subset_and_leaves_the_rest_as_text(browser, shared):
    with labelling(browser, shared, "kim") as page:
        rendered = page.evaluate("""sources => sources.map(source => {
            const box = document.createElement("div");
            window.Markdown.renderInto(box, source);
            return box.innerHTML.replace(/ (tabindex|start)="[^"]*"/g, "");
        })""", list(MARKDOWN_CASES))
        assert dict(zip(MARKDOWN_CASES, rendered)) == MARKDOWN_CASES


def test_a_submission_in_flight_disables_the_buttons_and_a_retry_keeps_its_submit_id(browser, shared):
    with labelling(browser, shared, "judy") as page:
        sent, held, lost = [], [], 4  # the first try and the page's 3 retries get no reply

        def lose_then_hold(route):
            sent.append(route.request.post_data_json)
            if len(sent) <= lost:
                route.abort("connectionreset")  # no reply: the label may or may not be saved
            else:
                held.append(route)

        page.route("**/api/label", lose_then_hold)
        page.click("#choose-a")
        expect(page.locator("#choose-a")).to_be_disabled()
        expect(page.locator("#status")).to_contain_text("Could not save", timeout=15_000)
        expect(page.locator("#choose-a")).to_be_enabled()
        assert len(sent) == lost

        page.click("#choose-a")  # the person tries the same choice again
        expect(page.locator("#choose-a")).to_be_disabled()
        page.wait_for_timeout(300)
        assert len(held) == 1
        for button in ("#choose-tie", "#choose-b", "#skip", "#undo"):
            expect(page.locator(button)).to_be_disabled()
        page.keyboard.press("3")  # ignored while a label is in flight
        page.wait_for_timeout(200)
        assert len(sent) == lost + 1
        held[0].continue_()
        expect(page.locator("#progress")).to_have_text(f"1 done · {len(SHARED_ROWS) - 1} left")
        expect(page.locator("#choose-a")).to_be_enabled()
        page.unroute("**/api/label")
        assert all(body == sent[0] for body in sent), "every try of one submission sends the same submit_id"
        assert sent[0]["ranking"] == [0, 1] and re.fullmatch(r"[0-9a-f-]{16,64}", sent[0]["submit_id"])

        with page.expect_request("**/api/label") as next_label:
            page.keyboard.press("2")
        assert next_label.value.post_data_json["submit_id"] != sent[0]["submit_id"]  # a new submission, a new id
        expect(page.locator("#progress")).to_have_text(f"2 done · {len(SHARED_ROWS) - 2} left")


def test_phone_width_has_no_horizontal_scroll_and_the_buttons_in_view(browser, shared):
    with labelling(browser, shared, "frank", width=390, height=844, phone=True) as page:
        skip_to(page, REVIEW["prompt"])  # a long code line and a long URL
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for button in ("#choose-a", "#choose-tie", "#choose-b", "#skip", "#undo"):
            expect(page.locator(button)).to_be_in_viewport()
        a, b = (page.locator("#completions .completion").nth(i).bounding_box() for i in (0, 1))
        assert b["y"] >= a["y"] + a["height"], "stacked on a phone"
        page.keyboard.press("End")  # the action bar stays in reach at the bottom of a long item
        expect(page.locator("#choose-b")).to_be_in_viewport()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.tap("#choose-b")
        expect(page.locator("#progress")).to_contain_text("1 done")


def test_admin_sees_each_person_and_an_annotator_is_not_allowed(browser, shared):
    with labelling(browser, shared, "ivan") as page:
        page.click("#choose-a")
        expect(page.locator("#progress")).to_contain_text("1 done")
        page.keyboard.press("3")
        expect(page.locator("#progress")).to_contain_text("2 done")
        page.keyboard.press("s")
        expect(page.locator("#progress")).to_have_text(f"2 done · {len(SHARED_ROWS) - 3} left")
        expect(page.locator("#admin-link")).to_be_hidden()
        page.goto("/admin")
        expect(page.locator("#status")).to_contain_text("Not allowed")
        expect(page.locator("#annotators")).to_be_hidden()

    with labelling(browser, shared, "boss") as page:
        page.click("#admin-link")
        page.wait_for_url("**/admin")
        rows = page.locator("#annotators tbody tr")
        expect(rows).to_have_count(len(SHARED_PEOPLE) + 1)  # and boss
        ivan = rows.filter(has=page.locator("td", has_text=re.compile("^ivan$"))).locator("td")
        expect(ivan).to_have_count(5)
        assert ivan.all_inner_texts()[:4] == ["ivan", "annotator", "2", "1"]
        assert re.search(r"\d", ivan.nth(4).inner_text()), "the time of ivan's last label"
        expect(page.locator("#complete")).to_have_text(re.compile(rf"^\d+ / {len(SHARED_ROWS)}$"))
        expect(page.locator("#agreement")).not_to_be_empty()
        page.click("#logout")
        page.wait_for_url("**/login")
        assert page.request.get("/api/me").status == 401


def test_a_post_without_the_csrf_header_is_refused(browser, shared):
    with labelling(browser, shared, "grace") as page:
        item_id = page.request.get("/api/next").json()["item"]["item_id"]
        csrf = page.request.get("/api/me").json()["csrf"]
        body, json_type = json.dumps({"item_id": item_id}), {"Content-Type": "application/json"}
        assert page.request.post("/api/skip", data=body, headers=json_type).status == 403
        assert page.request.post("/api/skip", data=body, headers={**json_type, "X-CSRF-Token": "forged"}).status == 403
        assert page.request.post("/api/skip", form={"item_id": str(item_id)}, headers={"X-CSRF-Token": csrf}).status == 403
        expect(page.locator("#progress")).to_have_text(f"0 done · {len(SHARED_ROWS)} left")
        assert page.request.post("/api/skip", data=body, headers={**json_type, "X-CSRF-Token": csrf}).ok  # the same, with it


def test_screenshot_for_the_docs(browser, shared):
    if os.environ.get("POSTTRAIN_SCREENSHOT") != "1":
        pytest.skip(f"POSTTRAIN_SCREENSHOT=1 saves the labelling page to {SCREENSHOT.relative_to(REPO)}")
    with labelling(browser, shared, "henry") as page:
        skip_to(page, PRIME["prompt"], key="1")  # labelling the items before it fills the progress bar a little
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
