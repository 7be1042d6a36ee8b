"""The report's figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

from posttrain.report.collect import Evaluation, Run

PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"]

# Training-curve panels: title -> the metrics drawn on it (only the ones a run logged).
CURVE_PANELS: list[tuple[str, tuple[str, ...]]] = [
    ("Reward", ("reward/mean",)),
    ("KL to reference", ("kl/k1", "kl/k3", "kl", "kl/sequence_k1")),
    ("Entropy", ("entropy",)),
    ("Completion length (tokens)", ("completion/mean_length",)),
    ("Loss", ("loss", "eval_loss")),
    ("Implicit reward margin", ("rewards/margins", "eval_rewards/margins")),
    ("Accuracy", ("accuracy", "eval_accuracy", "rewards/accuracies", "eval_rewards/accuracies")),
    ("Episodes: success and tool calls that worked", ("agent/success", "eval_success", "agent/tool_success")),
    ("Per episode: turns, tool calls, errors", ("agent/turns", "agent/tool_calls", "agent/parse_errors", "agent/tool_errors")),
    ("Milestones reached (share of episodes)", ("milestone/*",)),  # a key ending in * stands for every key with its prefix
    ("Confidence cascade: the tier that decided", ("cascade/*",)),
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb",
        "grid.linewidth": 0.8, "axes.edgecolor": "#9ca3af", "axes.labelcolor": "#374151",
        "xtick.color": "#4b5563", "ytick.color": "#4b5563", "legend.frameon": False, "legend.fontsize": 8,
    })
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    _pyplot().close(fig)
    return buf.getvalue()


def curve_panels(run: Run) -> list[tuple[str, bytes]]:
    """One small line chart per panel that has data in `run`: [(title, png)]."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    out = []
    logged = list(dict.fromkeys(k for r in run.records for k in r))
    for title, keys in CURVE_PANELS:
        keys = [m for k in keys for m in ([x for x in logged if x.startswith(k[:-1])] if k.endswith("*") else [k])]
        present = [k for k in keys if run.has(k)]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(4.4, 2.8))
        for i, key in enumerate(present):
            steps, values = run.series(key)
            style = "--" if key.startswith("eval_") else "-"
            marker = "o" if len(steps) <= 20 else None
            ax.plot(steps, values, style, color=PALETTE[i % len(PALETTE)], marker=marker, markersize=3, linewidth=1.6, label=key)
            if key == "reward/mean" and run.has("reward/std"):
                s_steps, std = run.series("reward/std")
                if s_steps == steps:
                    low = [v - s for v, s in zip(values, std)]
                    high = [v + s for v, s in zip(values, std)]
                    ax.fill_between(steps, low, high, color=PALETTE[i], alpha=0.12, linewidth=0, label="± std")
        ax.set_title(title, loc="left")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no step 1.975 on a one-step run
        only = {step for key in present for step in run.series(key)[0]}
        if len(only) == 1:  # one logged step: give the integer locator a range to work with
            ax.set_xlim(min(only) - 1, min(only) + 1)
        if len(present) > 1 or run.has("reward/std") and "reward/mean" in present:
            ax.legend(loc="best")
        out.append((title, _png(fig)))
    return out


def _steps_plot(ax, plt_max_locator, steps_seen: set[float]) -> None:
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(plt_max_locator(integer=True))
    if len(steps_seen) == 1:  # one logged step: give the integer locator a range to work with
        ax.set_xlim(min(steps_seen) - 1, min(steps_seen) + 1)


def hacking_panels(run: Run, prefixes: list[str], monitors: list[str]) -> list[tuple[str, bytes]]:
    """The reward-hacking figures of an RL run: the share of samples at the maximum of every function in
    `prefixes` ("reward/NAME", "monitor/NAME") with its jumps marked, and per monitor in `monitors` the
    trained reward (proxy) against the gold on 0..1 scales, with their gap."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    out = []
    if prefixes:
        fig, ax = plt.subplots(figsize=(5.6, 3.2))
        seen: set[float] = set()
        marked = False
        for i, prefix in enumerate(prefixes):
            steps, values = run.series(f"{prefix}/at_max")
            seen.update(steps)
            color = PALETTE[i % len(PALETTE)]
            style = "--" if prefix.startswith("monitor/") else "-"
            ax.plot(steps, values, style, color=color, marker="o" if len(steps) <= 20 else None, markersize=3,
                    linewidth=1.6, label=prefix)
            at = dict(zip(steps, values))
            jumps = [s for s, v in zip(*run.series(f"{prefix}/jump")) if v > 0]
            if jumps:
                ax.scatter(jumps, [at.get(s, 1.0) for s in jumps], marker="^", s=70, color=color, edgecolor="#111827",
                           linewidth=0.8, zorder=4, label="jump" if not marked else None)
                marked = True
        ax.set_ylim(-0.04, 1.08)
        ax.set_ylabel("share of samples")
        ax.set_title("Share of samples at the maximum reward", loc="left")
        _steps_plot(ax, MaxNLocator, seen)
        ax.legend(loc="best")
        out.append(("share at max", _png(fig)))
    for name in monitors:
        fig, ax = plt.subplots(figsize=(5.6, 3.2))
        seen = set()
        for i, (key, label, style) in enumerate(((f"monitor/{name}/proxy", "trained reward (proxy)", "-"),
                                                 (f"monitor/{name}/gold", f"{name} (gold)", "-"),
                                                 (f"monitor/{name}/gap", "gap = proxy − gold", ":"))):
            steps, values = run.series(key)
            seen.update(steps)
            ax.plot(steps, values, style, color=PALETTE[i], marker="o" if len(steps) <= 20 else None, markersize=3,
                    linewidth=1.6, label=label)
        ax.axhline(0.0, color="#9ca3af", linewidth=0.8)
        ax.set_ylabel("mean (0..1 where declared)")
        ax.set_title(f"Proxy vs gold: {name}", loc="left")
        _steps_plot(ax, MaxNLocator, seen)
        ax.legend(loc="best")
        out.append((f"proxy vs gold: {name}", _png(fig)))
    return out


def reward_kl_scatter(points: list[Evaluation], runs: list[Run], unit: str = "token") -> bytes:
    """Reward against KL for every evaluated policy; an RL run's path over training drawn faintly."""
    from posttrain.report.collect import kl_key

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    color = {p.policy: PALETTE[i % len(PALETTE)] for i, p in enumerate(points)}  # a run's path and point match
    for run in runs:
        key = kl_key(run)
        if key is None or not run.has("reward/mean"):
            continue
        rs, rewards = run.series("reward/mean")
        ks, kls = run.series(key)
        by_step = dict(zip(ks, kls))
        path = [(by_step[s], r) for s, r in zip(rs, rewards) if s in by_step]
        if len(path) > 1:
            ax.plot([p[0] for p in path], [p[1] for p in path], "-", color=color.get(run.name, "#9ca3af"), alpha=0.3, linewidth=1.2)
    for p in points:
        ax.scatter([p.kl], [p.reward], s=46, color=color[p.policy], edgecolor="white", linewidth=0.8, zorder=3)
        ax.annotate(p.policy, (p.kl, p.reward), xytext=(6, 4), textcoords="offset points", fontsize=8, color="#111827")
    ax.set_xlabel(f"KL to the reference policy (per {unit})")
    ax.set_ylabel("reward")
    ax.set_title("Reward vs KL", loc="left")
    return _png(fig)


def rounds_chart(title: str, labels: list[str], series: dict[str, list[float | None]], ylabel: str = "") -> bytes:
    """One line per series over the runs of a pipeline in order (x = `labels`, one per round); None: no point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.2, 1.1 * len(labels) + 2.4), 3.0))
    for i, (name, values) in enumerate(series.items()):
        xs = [x for x, v in enumerate(values) if v is not None]
        ax.plot(xs, [values[x] for x in xs], ":" if "gap" in name else "-", marker="o", markersize=4, linewidth=1.6,
                color=PALETTE[i % len(PALETTE)], label=name)
    ax.axhline(0.0, color="#9ca3af", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.legend(loc="best")
    return _png(fig)


def bar_chart(title: str, labels: list[str], values: list[float], *, ylabel: str = "", ylim: tuple[float, float] | None = None,
              reference: float | None = None, reference_label: str = "") -> bytes:
    """Horizontal-label bar chart with the value printed on each bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.6, 0.9 * len(labels) + 2.0), 2.7))
    bars = ax.bar(range(len(labels)), values, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))], width=0.6)
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="#6b7280", linestyle=":", linewidth=1.2, label=reference_label)
        ax.legend(loc="upper right")
    ax.set_xticks(range(len(labels)), labels, rotation=20 if max(map(len, labels)) > 8 else 0, ha="right" if max(map(len, labels)) > 8 else "center")
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.grid(axis="x", visible=False)
    ax.set_axisbelow(True)
    return _png(fig)
