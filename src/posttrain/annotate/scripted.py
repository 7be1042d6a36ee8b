"""An annotator that labels through the app's HTTP API by a reward, as a person would through the page.

It logs in with its token, asks for its next item, scores the completions it is shown with
`score(item_id, completions) -> rewards`, and submits: pairwise, the higher reward wins and a gap
below `tie_margin` is a tie; K-wise, completions ranked by reward; with `beta` > 0 it errs as people
do, by a Bradley–Terry / Plackett–Luce draw. CI and the `human_feedback`
recipe use it to run the whole loop offline; the load test uses it as 20 simultaneous people.
"""

from __future__ import annotations

import http.cookiejar
import json
import math
import random
import time
import urllib.error
import urllib.request
import uuid
from typing import Callable


class ApiError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class Client:
    """A logged-in session against the app at `base_url` (cookie + CSRF header, as the page sends)."""

    def __init__(self, base_url: str, name: str, token: str, timeout: float = 60):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf = ""
        self.csrf = self.call("POST", "/api/login", {"name": name, "token": token})["csrf"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-CSRF-Token": self.csrf}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("detail", detail)
            except ValueError:
                pass
            raise ApiError(exc.code, str(detail)) from None


def ranking_by_reward(rewards: list[float], mode: str, tie_margin: float = 0.0, beta: float = 0.0,
                      rng: random.Random | None = None) -> list[int]:
    """The label a reward gives: pairwise [0, 1] / [1, 0] / [0, 0] (tie); K-wise ranks, best 0.

    beta = 0: by the rewards themselves (a pairwise gap at most `tie_margin` is a tie). beta > 0: a
    noisy person, Plackett–Luce: completions ordered by β·r_i + Gumbel noise, so a pair is ordered
    A ≻ B with probability σ(β (r_A − r_B)), the Bradley–Terry draw of `posttrain pairs`."""
    if beta > 0:
        rng = rng or random.Random()
        keys = [beta * r - math.log(-math.log(rng.random() or 1e-300)) for r in rewards]
    else:
        keys = list(rewards)
    if mode == "pairwise":
        a, b = keys
        if beta == 0 and abs(a - b) <= tie_margin:
            return [0, 0]
        return [0, 1] if a > b else [1, 0]
    order = sorted(range(len(keys)), key=lambda i: (-keys[i], i))
    ranks = [0] * len(keys)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def label_queue(client: Client, score: Callable[[int, list[str]], list[float]], mode: str, tie_margin: float = 0.0,
                beta: float = 0.0, seed: int = 0, deadline: float | None = None,
                on_label: Callable[[dict], None] | None = None) -> int:
    """Label items until the queue is empty (or `deadline`, a time.monotonic() value); labels given."""
    given, rng = 0, random.Random(seed)
    while deadline is None or time.monotonic() < deadline:
        item = client.call("GET", "/api/next")["item"]
        if item is None:
            break
        ranking = ranking_by_reward(score(item["item_id"], item["completions"]), mode, tie_margin, beta, rng)
        submission = {"item_id": item["item_id"], "version": item["version"], "submit_id": uuid.uuid4().hex,
                      "ranking": ranking, "comment": ""}
        reply = client.call("POST", "/api/label", submission)
        given += 1
        if on_label is not None:
            on_label({**submission, **reply})
    return given
