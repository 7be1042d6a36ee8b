"""The labelling page in headless Chromium, end to end with export: label every item (mouse, keys, undo
from the empty page) and rank K completions by keyboard and by drag; the exported rows say what was clicked."""

from __future__ import annotations

import pytest

from annotate_pages import CHROMIUM, expect, export, log_in, open_page, served
from annotate_servers import MISSING

if MISSING:
    pytest.skip(f"posttrain annotate needs {', '.join(MISSING)}: pip install 'posttrain[annotate]'", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
if CHROMIUM is None:
    pytest.skip("no chromium, chromium-browser or google-chrome on PATH for Playwright to drive", allow_module_level=True)


def shown_prompt(page) -> str:
    return page.inner_text("#prompt").strip()


def card_texts(page) -> list[str]:
    return [text.strip() for text in page.locator("#completions .completion .body").all_inner_texts()]


def test_label_everything_then_export_matches_the_clicks(browser, tmp_path):
    rows = [{"prompt": f"What is the capital of {country}?", "completions": [f"{city}.", f"It might be {wrong}."]}
            for country, city, wrong in (("France", "Paris", "Lyon"), ("Japan", "Tokyo", "Osaka"), ("Peru", "Lima", "Cusco"))]
    with served(tmp_path / "labels", rows, ["alice", "bob"], 1) as (server, tokens, project):
        with open_page(browser, server) as page:
            log_in(page, "alice", tokens["alice"])
            seen = {}
            for n, (press, verdict) in enumerate((("#choose-a", "A"), ("2", "tie"), ("3", "B"))):
                expect(page.locator("#progress")).to_have_text(f"{n} done · {3 - n} left")
                seen[shown_prompt(page)] = (*card_texts(page), verdict)
                page.click(press) if press.startswith("#") else page.keyboard.press(press)
            expect(page.locator("#empty")).to_be_visible()
            expect(page.locator("#empty")).to_contain_text("All done")
            expect(page.locator("#progress")).to_have_text("3 done · 0 left")
            expect(page.locator("#choose-a")).to_be_hidden()

            page.keyboard.press("u")  # undo from the empty page brings the last item back
            expect(page.locator("#progress")).to_have_text("2 done · 1 left")
            last = shown_prompt(page)
            assert seen[last][2] == "B"
            page.keyboard.press("1")
            seen[last] = (*card_texts(page), "A")
            expect(page.locator("#empty")).to_be_visible()

        exported = export(project, tmp_path / "export")["preferences.jsonl"]
        assert len(exported) == 3
        for row in exported:
            a, b, verdict = seen[row["prompt"]]
            assert row["annotators"] == ["alice"]
            if verdict == "tie":
                assert row["label"] == 0.5 and {row["chosen"], row["rejected"]} == {a, b}
            else:
                chosen, rejected = (a, b) if verdict == "A" else (b, a)
                assert (row["chosen"], row["rejected"], row["label"]) == (chosen, rejected, 1.0)


def ranking_order(page) -> list[str]:
    return [text.strip()[0] for text in page.locator("#ranking li .letter").all_inner_texts()]


def test_rank_three_by_keyboard_and_by_drag_then_export(browser, tmp_path):
    rows = [{"prompt": f"Name a {kind}.", "completions": [f"{kind} one", f"{kind} two", f"{kind} three"]} for kind in ("river", "mountain")]
    with served(tmp_path / "ranking", rows, ["alice"], 1, "mode=ranking") as (server, tokens, project):
        with open_page(browser, server) as page:
            log_in(page, "alice", tokens["alice"])
            expect(page.locator("#ranking li")).to_have_count(3)
            expect(page.locator("#pairwise-actions")).to_be_hidden()
            final = {}
            # keyboard: pick C with its digit, move it up twice, Enter submits
            letters = dict(zip("ABC", card_texts(page)))
            assert ranking_order(page) == ["A", "B", "C"]
            page.keyboard.press("3")
            expect(page.locator('#ranking li[aria-selected="true"]')).to_have_attribute("data-letter", "C")
            page.keyboard.press("ArrowUp")
            page.keyboard.press("ArrowUp")
            assert ranking_order(page) == ["C", "A", "B"]
            final[shown_prompt(page)] = (letters, ["C", "A", "B"])
            page.keyboard.press("Enter")
            expect(page.locator("#progress")).to_have_text("1 done · 1 left")

            # mouse: drag B onto A's upper half (above it), then A onto C's lower half (below it)
            letters = dict(zip("ABC", card_texts(page)))
            def entry(letter):
                return page.locator(f'#ranking li[data-letter="{letter}"]')

            entry("B").drag_to(entry("A"), target_position={"x": 40, "y": 4})
            assert ranking_order(page) == ["B", "A", "C"]
            height = entry("C").bounding_box()["height"]
            entry("A").drag_to(entry("C"), target_position={"x": 40, "y": height - 4})
            assert ranking_order(page) == ["B", "C", "A"]
            final[shown_prompt(page)] = (letters, ["B", "C", "A"])
            page.click("#submit-ranking")
            expect(page.locator("#empty")).to_be_visible()

        rankings = export(project, tmp_path / "export")["rankings.jsonl"]
        assert len(rankings) == 2
        for row in rankings:
            letters, order = final[row["prompt"]]
            letter_of = {text: letter for letter, text in letters.items()}
            assert row["ranking"] == [order.index(letter_of[text]) for text in row["completions"]]
