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
                      noise: list[float] | None = None) -> list[int]:
    """The label a reward gives: pairwise [0, 1] / [1, 0] / [0, 0] (tie); K-wise ranks, best 0.

    beta = 0: by the rewards themselves (a pairwise gap at most `tie_margin` is a tie). beta > 0: a
    noisy person, Plackett–Luce: completions ordered by β·r_i + g_i with g_i standard Gumbel (`noise`),
    so a pair is ordered A ≻ B with probability σ(β (r_A − r_B)), the Bradley–Terry draw of `posttrain pairs`."""
    if beta > 0:
        keys = [beta * r + g for r, g in zip(rewards, noise or gumbel_noise(len(rewards), random.Random()))]
    else:
        keys = list(rewards)
    if mode == "pairwise":
        a, b = keys
        # Equal keys (with beta > 0: the same text twice, so the same reward and the same draw) are a tie:
        # "the one shown second" would make the label depend on the page's random order.
        if a == b or (beta == 0 and abs(a - b) <= tie_margin):
            return [0, 0]
        return [0, 1] if a > b else [1, 0]
    order = sorted(range(len(keys)), key=lambda i: (-keys[i], i))
    ranks = [0] * len(keys)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def gumbel_noise(count: int, rng: random.Random) -> list[float]:
    return [-math.log(-math.log(rng.random() or 1e-300)) for _ in range(count)]


def person_noise(seed: int, name: str, item_id: int, texts: list[str]) -> list[float]:
    """One person's Gumbel draw for each completion of an item, fixed by (seed, person, item, text):
    the same labels whatever order the page shows them in and whoever asks first."""
    return [gumbel_noise(1, random.Random(f"{seed}:{name}:{item_id}:{text}"))[0] for text in texts]


def label_one(client: Client, name: str, score: Callable[[int, list[str]], list[float]], mode: str,
              tie_margin: float = 0.0, beta: float = 0.0, seed: int = 0) -> dict | None:
    """Label the person's next item; the submission and the server's reply, or None when none is left."""
    item = client.call("GET", "/api/next")["item"]
    if item is None:
        return None
    texts = item["completions"]
    noise = person_noise(seed, name, item["item_id"], texts) if beta > 0 else None
    submission = {"item_id": item["item_id"], "version": item["version"], "submit_id": uuid.uuid4().hex,
                  "ranking": ranking_by_reward(score(item["item_id"], texts), mode, tie_margin, beta, noise), "comment": ""}
    return {**submission, **client.call("POST", "/api/label", submission)}


def label_queue(client: Client, score: Callable[[int, list[str]], list[float]], mode: str, tie_margin: float = 0.0,
                beta: float = 0.0, seed: int = 0, name: str = "") -> int:
    """Label items until the person's queue is empty; how many were labelled."""
    given = 0
    while label_one(client, name, score, mode, tie_margin, beta, seed) is not None:
        given += 1
    return given
