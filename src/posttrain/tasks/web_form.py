"""Web form: a text-rendered miniature of seed 003's computer-use tasks (S3 L2987-3125).

A few one-field web forms live at short URLs. The user asks to fill one in, submit it and save the
receipt; the agent acts with five tools, and a page is shown as a compact accessibility-tree-like
line (the embedded model has 512 positions, and the whole episode must fit):

    open(url)            -> "hotel/book: textbox date, button submit"        navigation event
    type(field, text)    -> "date=0512"                                      fill event
    click(name)          -> a button press (click("submit") is submit())     click event
    submit()             -> "hotel/book/done: text sent date=0512"           click event (button submit)
    save(file)           -> "saved h7.txt"                                   file event, then goal event

The events are rewards/milestone.py's vocabulary, so seed 003's milestone reward (nav 0.1, UI 0.2,
form 0.2, file 0.3, goal 0.2) scores an episode from them and the row's `expected`:
{"url": the form, "click": {"role": "button", "name": "submit"}, "fields": [the field],
"file_extension": ".txt"}. The goal is verified (a `goal` event with verified true) when the receipt
is saved under the asked name after the form was submitted with the asked value: the task done.

A wrong action (an unknown page or field, nothing to submit or save) raises ValueError with a
one-line reason; the agent's tool box shows it to the model as an error observation. `Browser` is
the state machine; the demonstration of each row is made by running it (so trace and world agree), as
structured `tool_calls` the chat template renders in its own format. The demonstrations are a careless
teacher's: two in three stop after submitting, with a plain reply and no save, so imitation saves a
third of the time and only the environment's reward teaches the rest. The environment serving these
rows is agents/web_form.py.
"""

from __future__ import annotations

import copy
import random

from posttrain.tasks.base import Task
from posttrain.tasks.calculator import tool_call

# url -> (the form's one field, a value maker)
FORMS: dict[str, tuple[str, object]] = {
    "shop/signup": ("name", lambda rng: rng.choice(["Ann", "Bob", "Eva", "Li", "Omar", "Mia", "Raj", "Zoe"])),
    "bank/pay": ("amount", lambda rng: str(rng.randint(5, 999))),
    "hotel/book": ("date", lambda rng: f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}"),
    "mail/new": ("to", lambda rng: rng.choice(["ann", "bob", "eva", "li", "omar", "mia"]) + str(rng.randint(1, 9))),
    "news/join": ("email", lambda rng: rng.choice(["a", "b", "k", "x", "z"]) + str(rng.randint(1, 9)) + "@m.io"),
    "vote/poll": ("choice", lambda rng: rng.choice(["red", "blue", "green", "tea", "coffee"])),
}
SUBMIT = {"role": "button", "name": "submit"}
TOOL_NAMES = ("open", "click", "type", "submit", "save")
# The careless teacher's share of demonstrations that save (module docstring). Below 1/2, so the imitating
# model's greedy episodes stop: at 1/2 greedy decoding sits on a knife edge.
DEMO_SAVE_RATE = 1 / 3
CARELESS_REPLY = "Sent."
_SCHEMAS: list[dict] = []


class Browser:
    """The web's state for one episode: the page, what was typed, whether it was submitted, files saved.

    Every action returns the observation text and appends its milestone events to `self.events`.
    `want` is the task ({"url", "field", "value", "file"}); it decides only the goal event."""

    def __init__(self, want: dict | None = None, events: list | None = None):
        self.reset(want or {}, events)

    def reset(self, want: dict, events: list | None = None) -> None:
        """A fresh episode in place (an environment's tools are this object's bound methods)."""
        self.want, self.events = want, [] if events is None else events
        self.url: str | None = None
        self.typed: dict[str, str] = {}
        self.submitted: dict[str, str] | None = None
        self.files: list[str] = []

    def page(self) -> str:
        if self.url is None:
            return "blank page; open(url) a form: " + ", ".join(FORMS)
        if self.submitted is not None:
            return "sent"
        return f"textbox {FORMS[self.url][0]}, button submit"

    def open(self, url: str) -> str:
        """Open a web page.

        Args:
            url: the page, e.g. "shop/signup"
        """
        url = str(url).strip().strip("/")
        if url not in FORMS:
            raise ValueError(f"no page {url!r}; pages: {', '.join(FORMS)}")
        self.url, self.typed, self.submitted = url, {}, None
        self.events.append({"type": "navigation", "url": url})
        return self.page()

    def type(self, field: str, text: str) -> str:
        """Type text into a field of the form on the page.

        Args:
            field: the field's name
            text: what to type
        """
        if self.url is None or self.submitted is not None:
            raise ValueError("no form on this page; open(url) a form first")
        if field != FORMS[self.url][0]:
            raise ValueError(f"no field {field!r}; this form has: {FORMS[self.url][0]}")
        self.typed[field] = str(text)
        self.events.append({"type": "fill", "field": field, "value": str(text)})
        return "ok"

    def click(self, name: str) -> str:
        """Click a button on the page.

        Args:
            name: the button's name
        """
        if name == SUBMIT["name"]:
            return self.submit()
        if self.url is None or self.submitted is not None:
            raise ValueError("no buttons on this page; open(url) a form first")
        raise ValueError(f"no button {name!r} on this page; buttons: submit")

    def submit(self) -> str:
        """Submit the form on the page."""
        if self.url is None or self.submitted is not None:
            raise ValueError("no form to submit; open(url) a form first")
        self.events.append({"type": "click", **SUBMIT})
        self.submitted = dict(self.typed)
        return self.page()

    def save(self, file: str) -> str:
        """Save the page (the receipt of a submitted form) to a file.

        Args:
            file: the file name, e.g. "r1.txt"
        """
        if self.submitted is None:
            raise ValueError("nothing to save; submit() the form first")
        file = str(file).strip()
        if not file or "/" in file:
            raise ValueError("give a plain file name such as r1.txt")
        self.files.append(file)
        self.events.append({"type": "file", "event": "created", "path": file})
        self.events.append({"type": "goal", "verified": self.goal_reached()})
        return "saved"

    def goal_reached(self) -> bool:
        want = self.want
        return (self.url == want["url"] and self.submitted == {want["field"]: want["value"]}
                and want["file"] in self.files)


# ----------------------------------------------------------------------------------------- rows


def make_want(rng: random.Random) -> dict:
    url = rng.choice(sorted(FORMS))
    field, value_of = FORMS[url]
    return {"url": url, "field": field, "value": value_of(rng), "file": f"{url[0]}{rng.randint(1, 9)}.txt"}


def question(want: dict) -> str:
    return f"{want['url']}: {want['field']} {want['value']}, submit, save {want['file']}"


def expected_of(want: dict) -> dict:
    """What the milestone detectors check (rewards/milestone.py)."""
    return {"url": want["url"], "click": dict(SUBMIT), "fields": [want["field"]], "file_extension": ".txt"}


def gold_actions(want: dict, saves: bool = True) -> list[list[tuple[str, dict]]]:
    """The teacher's episode, one list of calls per assistant turn: open; type and submit; save (a careless
    one stops before the save)."""
    return [[("open", {"url": want["url"]})],
            [("type", {"field": want["field"], "text": want["value"]}), ("submit", {})],
            *([[("save", {"file": want["file"]})]] if saves else [])]


def gold_trace(want: dict, saves: bool = True) -> tuple[list[dict], list[dict]]:
    """The teacher's completion (assistant tool calls and tool results; a careless one ends with a plain
    reply after submitting) and its events, made by running the calls on a Browser."""
    browser, messages = Browser(want), []
    for calls in gold_actions(want, saves):
        messages.append({"role": "assistant", "content": "",
                         "tool_calls": [tool_call(name, **args) for name, args in calls]})
        for name, args in calls:
            messages.append({"role": "tool", "name": name, "content": getattr(browser, name)(**args)})
    if not saves:
        messages.append({"role": "assistant", "content": CARELESS_REPLY})
    assert browser.goal_reached() == saves
    return messages, browser.events


def tool_schemas() -> list[dict]:
    """The five tools' JSON schemas, made by transformers from the environment's typed methods."""
    if not _SCHEMAS:  # made once (transformers parses the docstrings), copied per row
        from transformers.utils import get_json_schema

        _SCHEMAS.extend(get_json_schema(getattr(Browser(), name)) for name in TOOL_NAMES)
    return copy.deepcopy(_SCHEMAS)


def make_row(want: dict, saves: bool = True) -> dict:
    completion, _ = gold_trace(want, saves)
    return {"prompt": [{"role": "user", "content": question(want)}], "completion": completion,
            "tools": tool_schemas(), "expected": expected_of(want), "want": dict(want)}


def make_example(rng: random.Random) -> tuple[str, dict]:
    want = make_want(rng)
    return question(want), make_row(want, saves=rng.random() < DEMO_SAVE_RATE)


# ------------------------------------------------------------------------------------- scorers


def _replay(completion, want: dict) -> Browser:
    """A Browser driven by the structured tool calls of a conversation completion."""
    browser = Browser(want)
    for message in completion if isinstance(completion, list) else []:
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            fn = call.get("function", call)
            if fn.get("name") not in TOOL_NAMES:
                continue
            try:
                getattr(browser, fn["name"])(**(fn.get("arguments") or {}))
            except (ValueError, TypeError):  # a wrong action changes nothing, as in the environment
                pass
    return browser


def goal(prompts, completions, want=None, events=None, **columns) -> list[float]:
    """1.0 when the task is done: from an episode's `events` column (a rollout's) when given, a verified
    goal event; otherwise the conversation's structured tool calls replayed reach the goal."""
    if events is not None:
        return [float(any(e.get("type") == "goal" and e.get("verified") is True for e in cell or [])) for cell in events]
    if want is None:
        raise ValueError("web_form goal needs the 'want' column (or an episode's 'events')")
    return [float(_replay(c, w).goal_reached()) for c, w in zip(completions, want)]


goal.reward_range = (0.0, 1.0)

TASK = Task(
    name="web_form",
    make_example=make_example,
    scorers={"goal": goal},
    headline="goal",
    default_max_new_tokens=140,  # the longest gold turn (type + submit) is ~118 tokens
    description="Fill in, submit and save a text-rendered web form with open/click/type/submit/save tools.",
)
