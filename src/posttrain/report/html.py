"""One self-contained HTML page: inline CSS, PNGs as base64 data URIs, every text escaped."""

from __future__ import annotations

import base64
import datetime
from html import escape

from posttrain.report import plots
from posttrain.report.collect import RL_STAGES, ReportData, reward_kl_from_evaluations, reward_kl_points

SUMMARY_KEYS = ("loss", "eval_loss", "reward/mean", "kl/k1", "kl", "entropy", "completion/mean_length", "accuracy",
                "eval_accuracy", "rewards/accuracies", "rewards/margins", "eval_rewards/accuracies",
                "pairs", "sample_reward_mean", "reward_agreement", "kept", "kept_fraction")  # the last: pairs / rejection stages
EVAL_KEYS = ("score", "pass@1", "mean_length", "truncation_rate", "num_prompts", "num_samples")
MAX_SAMPLE_PROMPTS = 8

CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --card:#ffffff; --bg:#f6f7f9; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
header { background:#0f172a; color:#f8fafc; padding:28px 40px 22px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header .meta { color:#94a3b8; font-size:13px; }
nav { margin-top:14px; display:flex; flex-wrap:wrap; gap:8px; }
nav a { color:#e2e8f0; text-decoration:none; font-size:13px; padding:3px 10px; border:1px solid #334155; border-radius:999px; }
main { max-width:1240px; margin:0 auto; padding:24px 40px 60px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:20px 24px; margin:0 0 22px; }
h2 { margin:0 0 12px; font-size:19px; font-weight:650; }
h3 { margin:18px 0 8px; font-size:15px; font-weight:600; }
h3 .tag, td .tag { font-weight:500; font-size:12px; color:var(--accent); background:#eff6ff; border-radius:4px; padding:1px 7px; margin-left:6px; }
p.note { color:var(--muted); font-size:13px; margin:6px 0 12px; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:0.04em; }
td.num { font-variant-numeric:tabular-nums; }
.chips span { display:inline-block; margin:1px 6px 3px 0; padding:1px 8px; background:#f3f4f6; border-radius:4px;
              font-variant-numeric:tabular-nums; font-size:12.5px; white-space:nowrap; }
.chips b { font-weight:500; color:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(360px, 1fr)); gap:14px; }
.grid figure, figure.wide { margin:0; }
img { max-width:100%; height:auto; display:block; }
.prompt { background:#f8fafc; border-left:3px solid var(--accent); padding:8px 12px; margin:14px 0 8px; font-size:14px; white-space:pre-wrap; }
.side { display:grid; grid-template-columns:repeat(auto-fit, minmax(260px, 1fr)); gap:10px; }
.completion { border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.completion .who { font-size:12px; font-weight:600; color:var(--accent); margin-bottom:4px; display:flex; justify-content:space-between; }
.completion .who .score { color:var(--muted); font-weight:500; font-variant-numeric:tabular-nums; }
.completion pre { margin:0; white-space:pre-wrap; word-break:break-word; font:13px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _opt(value) -> str:
    return "" if value is None else _fmt(value)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _chips(pairs) -> str:
    return '<div class="chips">' + "".join(f"<span><b>{escape(k)}</b> {_fmt(v)}</span>" for k, v in pairs) + "</div>"


def _summary(data: ReportData) -> str:
    rows = []
    for run in data.runs:
        metrics = [(k, run.last(k)) for k in SUMMARY_KEYS if run.has(k)]
        seconds = "" if run.seconds is None else f"{run.seconds:.1f} s"
        rows.append(f"<tr><td><b>{escape(run.name)}</b></td><td><span class='tag'>{escape(run.stage)}</span></td>"
                    f"<td>{escape(run.status or 'done')}</td><td class='num'>{run.steps}</td><td class='num'>{seconds}</td>"
                    f"<td>{_chips(metrics)}</td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>stage</th><th>type</th><th>status</th><th>steps</th><th>time</th><th>final metrics</th></tr>"
            + "".join(rows) + "</table>")


def _evaluations(data: ReportData) -> str:
    if not data.eval_reports:
        return ""
    rows = []
    for rep in data.eval_reports:
        pairs = [(k, rep.data[k]) for k in EVAL_KEYS if k in rep.data]
        rows.append(f"<tr><td><b>{escape(rep.policy)}</b></td><td>{escape(str(rep.data.get('dataset', '')))}</td>"
                    f"<td>{_chips(pairs)}</td></tr>")
    scored = [r for r in data.eval_reports if isinstance(r.data.get("score"), (int, float))]
    chart = ""
    if scored:
        chart = _img(plots.bar_chart("Evaluation score", [r.policy for r in scored], [float(r.data["score"]) for r in scored],
                                     ylabel="score"), "evaluation scores")
    return (chart + "<table><tr><th>policy</th><th>dataset</th><th>results</th></tr>" + "".join(rows) + "</table>")


def _reward_kl(data: ReportData) -> str:
    points = reward_kl_points(data)
    if not points:
        return ""
    rows = "".join(f"<tr><td><b>{escape(p.policy)}</b></td><td class='num'>{_fmt(p.reward)}</td><td class='num'>{_fmt(p.kl)}</td>"
                   f"<td>{escape(p.source)}</td></tr>" for p in points)
    evaluated = reward_kl_from_evaluations(data)
    unit = "sequence" if evaluated else "token"
    note = ("Each point is a policy evaluated on the same held-out prompts: gold reward, KL(π‖π_ref) summed over the "
            "completion (best-of-n: the analytic log n − (n−1)/n)." if evaluated else
            "Each point is an RL stage's final policy, from its training log; faint lines trace it over training. "
            "KL is the per-token estimate.")
    return (f'<figure class="wide">{_img(plots.reward_kl_scatter(points, [] if evaluated else data.runs, unit=unit), "reward vs KL")}</figure>'
            f'<p class="note">{escape(note)}</p>'
            f"<table><tr><th>policy</th><th>reward</th><th>KL</th><th>from</th></tr>{rows}</table>")


def _win_rates(data: ReportData) -> str:
    wins = [e for e in data.evaluations if e.win_rate is not None]
    if not wins:
        return ""
    labels = [e.policy + (f" ({e.judge})" if e.judge else "") for e in wins]
    chart = plots.bar_chart("Win rate against the SFT model", labels, [e.win_rate for e in wins], ylabel="win rate",
                            ylim=(0, 1), reference=0.5, reference_label="tie with SFT")
    rows = "".join(f"<tr><td><b>{escape(e.policy)}</b></td><td>{escape(e.judge or '')}</td><td class='num'>{_fmt(e.win_rate)}</td></tr>"
                   for e in wins)
    return (_img(chart, "win rates") + "<table><tr><th>policy</th><th>judged by</th><th>win rate vs SFT</th></tr>"
            + rows + "</table>")


def _rm_accuracy(data: ReportData) -> str:
    rms = [r for r in data.runs if r.stage in ("rm", "prm") and (r.has("eval_accuracy") or r.has("accuracy"))]
    if not rms:
        return ""
    labels = [r.name for r in rms]
    values = [r.last("eval_accuracy") if r.has("eval_accuracy") else r.last("accuracy") for r in rms]
    chart = plots.bar_chart("Reward-model accuracy", labels, values, ylabel="accuracy", ylim=(0, 1), reference=0.5,
                            reference_label="chance")
    rows = "".join(f"<tr><td><b>{escape(r.name)}</b></td><td class='num'>{_opt(r.last('eval_accuracy'))}</td>"
                   f"<td class='num'>{_opt(r.last('accuracy'))}</td></tr>" for r in rms)
    return (_img(chart, "reward model accuracy") + '<p class="note">Share of held-out pairs where the chosen answer gets the'
            " higher reward (training accuracy when no eval set was given).</p>"
            "<table><tr><th>stage</th><th>held-out accuracy</th><th>train accuracy</th></tr>" + rows + "</table>")


AGENT_KEYS = ("agent/turns", "agent/tool_calls", "agent/tool_success", "agent/parse_errors", "agent/tool_errors",
              "agent/success", "agent/overflow", "agent/truncated", "eval_success", "eval_return", "eval_turns")


def _agents(data: ReportData) -> str:
    """Runs in an environment: per-episode turns, tool calls and their success, milestones and cascade tiers,
    at the first and the last logged step."""
    parts = []
    for run in data.runs:
        if not run.has("agent/turns"):
            continue
        logged = dict.fromkeys(k for r in run.records for k in r)
        keys = [k for k in AGENT_KEYS if run.has(k)] + [k for k in logged if k.startswith(("milestone/", "cascade/")) and run.has(k)]
        rows = "".join(f"<tr><td>{escape(k)}</td><td class='num'>{_fmt(run.series(k)[1][0])}</td>"
                       f"<td class='num'>{_fmt(run.last(k))}</td></tr>" for k in keys)
        parts.append(f"<h3>{escape(run.name)}<span class='tag'>{escape(run.stage)}</span></h3>"
                     f"<table><tr><th>per episode</th><th>first step</th><th>last step</th></tr>{rows}</table>")
    if not parts:
        return ""
    note = ("Means over each round's episodes: turns and tool calls per episode, the share of tool calls that returned a "
            "result, the share of episodes that succeeded or ran out of context, each milestone's share (milestone/), "
            "and the share of samples each tier of the confidence cascade decided (cascade/). eval_ rows: greedy "
            "episodes of the held-out prompts. The curves are under Training curves.")
    return f'<p class="note">{escape(note)}</p>' + "".join(parts)


def _curves(data: ReportData) -> str:
    parts = []
    for run in data.runs:
        panels = plots.curve_panels(run)
        if not panels:
            continue
        figures = "".join(f"<figure>{_img(png, f'{run.name}: {title}')}</figure>" for title, png in panels)
        parts.append(f"<h3>{escape(run.name)}<span class='tag'>{escape(run.stage)}</span></h3><div class='grid'>{figures}</div>")
    return "".join(parts)


def _hacking_keys(run) -> tuple[list[str], list[str]]:
    """The functions with reward-hacking diagnostics in a run ("reward/NAME", "monitor/NAME") and its monitors with a gap."""
    keys = dict.fromkeys(k for r in run.records for k in r)
    prefixes = [k.removesuffix("/at_max") for k in keys if k.endswith("/at_max") and k.startswith(("reward/", "monitor/"))]
    monitors = [k.removeprefix("monitor/").removesuffix("/gap") for k in keys if k.startswith("monitor/") and k.endswith("/gap")]
    return prefixes, monitors


def _reward_hacking(data: ReportData) -> str:
    parts = []
    for run in data.runs:
        prefixes, monitors = _hacking_keys(run)
        if not prefixes and not monitors:
            continue
        panels = plots.hacking_panels(run, prefixes, monitors)
        figures = "".join(f"<figure>{_img(png, f'{run.name}: {title}')}</figure>" for title, png in panels)
        jumps = []
        for prefix in prefixes:
            z_at = dict(zip(*run.series(f"{prefix}/jump_z")))
            jumps += [(prefix, step, z_at.get(step)) for step, flag in zip(*run.series(f"{prefix}/jump")) if flag > 0]
        rows = "".join(f"<tr><td>{escape(prefix)}</td><td class='num'>{int(step)}</td><td class='num'>{_opt(z)}</td></tr>"
                       for prefix, step, z in jumps)
        table = ("<table><tr><th>function</th><th>step</th><th>robust z</th></tr>" + rows + "</table>") if rows else \
            "<p class='note'>No sudden jumps.</p>"
        gaps = "".join(f"<span><b>{escape(m)} gap</b> {_fmt(run.last(f'monitor/{m}/gap'))}</span>"
                       for m in monitors if run.has(f"monitor/{m}/gap"))
        parts.append(f"<h3>{escape(run.name)}<span class='tag'>{escape(run.stage)}</span></h3>"
                     + (f"<div class='chips'>{gaps}</div>" if gaps else "") + f"<div class='grid'>{figures}</div>{table}")
    if not parts:
        return ""
    note = ("Per reward function (solid) and monitor function (dashed): the share of each round's samples at the "
            "function's maximum (its declared maximum, else the largest value seen so far), with ▲ where its mean "
            "jumped (more than 4 robust standard deviations from the previous 10 rounds). Proxy vs gold: the "
            "trained reward and each monitor_funcs function over the same samples, on 0..1 scales where their "
            "ranges are declared; a gap that grows while the gold stays flat is the signature of reward hacking.")
    return f'<p class="note">{escape(note)}</p>' + "".join(parts)


def _proxy_gold_rounds(data: ReportData) -> str:
    """Iterative RLHF's monitor: per RL run of the pipeline (a round), in order, the trained reward (proxy) and each
    monitor (gold) at its last logged step; shown when at least two runs log the same monitor."""
    rounds: dict[str, list] = {}
    for run in data.runs:
        for name in _hacking_keys(run)[1]:
            rounds.setdefault(name, []).append(run)
    parts = []
    for name, runs in rounds.items():
        if len(runs) < 2:
            continue
        last = {key: [run.last(f"monitor/{name}/{key}") for run in runs] for key in ("proxy", "gold", "gap", "correlation")}
        first_gold = [next(iter(run.series(f"monitor/{name}/gold")[1]), None) for run in runs]
        rows = "".join(f"<tr><td>{escape(run.name)}<span class='tag'>{escape(run.stage)}</span></td>"
                       + "".join(f"<td class='num'>{_opt(v)}</td>" for v in (last["proxy"][i], first_gold[i], last["gold"][i],
                                                                             last["gap"][i], last["correlation"][i])) + "</tr>"
                       for i, run in enumerate(runs))
        png = plots.rounds_chart(f"Proxy vs gold by round: {name}", [run.name for run in runs],
                                 {"trained reward (proxy)": last["proxy"], f"monitor {name} (gold)": last["gold"], "gap": last["gap"]})
        parts.append(f"<h3>{escape(name)}</h3><figure class='wide'>{_img(png, f'proxy vs gold by round: {name}')}</figure>"
                     "<table><tr><th>round</th><th>proxy</th><th>gold at start</th><th>gold</th><th>gap</th><th>correlation</th></tr>"
                     + rows + "</table>")
    if not parts:
        return ""
    note = ("One row per RL stage of the pipeline, in order (iterative RLHF: one per round, each against a reward model "
            "retrained on the previous policy's samples): the trained reward and the monitor (gold) at the stage's last "
            "logged step, on 0..1 where declared. A gap that grows round over round while the gold stalls is reward "
            "hacking that retraining the reward model did not catch.")
    return f'<p class="note">{escape(note)}</p>' + "".join(parts)


def _samples(data: ReportData) -> str:
    by_prompt: dict[str, list] = {}
    for s in data.samples:
        by_prompt.setdefault(s.prompt, []).append(s)
    if not by_prompt:
        return ""
    policies = list(dict.fromkeys(s.policy for s in data.samples))
    parts = []
    for prompt, samples in list(by_prompt.items())[:MAX_SAMPLE_PROMPTS]:
        samples = sorted(samples, key=lambda s: policies.index(s.policy))
        cards = "".join(
            f"<div class='completion'><div class='who'><span>{escape(s.policy)}</span>"
            f"<span class='score'>{'' if s.score is None else 'score ' + _fmt(s.score)}</span></div>"
            f"<pre>{escape(s.completion)}</pre></div>" for s in samples)
        parts.append(f"<div class='prompt'>{escape(prompt)}</div><div class='side'>{cards}</div>")
    more = len(by_prompt) - MAX_SAMPLE_PROMPTS
    note = f'<p class="note">{more} more prompts not shown.</p>' if more > 0 else ""
    return "".join(parts) + note


SECTIONS = [
    ("summary", "Stages", _summary),
    ("evaluations", "Evaluations", _evaluations),
    ("reward-kl", "Reward vs KL", _reward_kl),
    ("win-rates", "Win rates vs SFT", _win_rates),
    ("rm-accuracy", "Reward-model accuracy", _rm_accuracy),
    ("agents", "Agents: episodes, tools, milestones", _agents),
    ("reward-hacking", "Reward hacking", _reward_hacking),
    ("proxy-gold-rounds", "Proxy vs gold across rounds", _proxy_gold_rounds),
    ("curves", "Training curves", _curves),
    ("samples", "Sample completions", _samples),
]


def render_html(data: ReportData) -> str:
    """The report page for `data` (see collect.collect)."""
    bodies = [(sid, title, build(data)) for sid, title, build in SECTIONS]
    bodies = [(sid, title, body) for sid, title, body in bodies if body]
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title, _ in bodies)
    sections = "".join(f'<section id="{sid}"><h2>{escape(title)}</h2>{body}</section>' for sid, title, body in bodies)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rl = sum(r.stage in RL_STAGES for r in data.runs)
    meta = f"{escape(str(data.root))} · {len(data.runs)} stage(s), {rl} RL · generated {now}"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>posttrain report: {escape(data.title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>posttrain report: {escape(data.title)}</h1><div class='meta'>{meta}</div><nav>{nav}</nav></header>"
            f"<main>{sections}</main></body></html>\n")
