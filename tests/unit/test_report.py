"""`posttrain report`: a self-contained HTML page from a pipeline directory, checked as text, as
decoded PNGs, and rendered by headless Chromium when one is installed."""

import base64
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.cli import main
from posttrain.report import write_report
from posttrain.report.collect import collect, reward_kl_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = '<script>alert("x")</script> & done'


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_pipeline_dir(root: Path) -> Path:
    """A pipeline dir like `posttrain pipeline instructgpt` leaves: sft -> rm -> ppo and a grpo run,
    with the metrics each stage really logs (shapes of real runs, values made up but plausible)."""
    sft = [{"step": s, "loss": 2.0 * math.exp(-s / 30) + 0.6, "grad_norm": 1.0, "lr": 1e-4, "epoch": s / 60}
           for s in range(1, 61)]
    for r in sft[9::10]:
        r["eval_loss"] = r["loss"] + 0.05
    rm = [{"step": s, "loss": 0.69 - 0.004 * s, "accuracy": 0.5 + 0.006 * s, "chosen_reward": 0.02 * s,
           "rejected_reward": -0.01 * s, "margin": 0.03 * s} for s in range(1, 41)]
    rm[-1].update(eval_loss=0.55, eval_accuracy=0.715, eval_margin=0.9)
    ppo = [{"step": s, "loss": 0.05 / s, "reward/mean": 0.1 + 0.5 * (1 - math.exp(-s / 8)), "reward/std": 0.2,
            "kl/k1": 0.004 * s, "kl/k3": 0.0035 * s, "entropy": 1.8 - 0.02 * s, "completion/mean_length": 40 + s,
            "value_loss": 0.1, "values/mean": 0.0} for s in range(1, 31)]
    grpo = [{"step": s, "loss": 0.0, "reward/mean": 0.2 + 0.02 * s, "reward/std": 0.3, "kl": 0.002 * s,
             "kl/k1": 0.002 * s, "kl/k3": 0.0019 * s, "entropy": 0.9 - 0.01 * s, "completion/mean_length": 120 - s}
            for s in range(1, 21)]
    for name, rows in (("sft", sft), ("rm", rm), ("ppo", ppo), ("grpo", grpo)):
        _write_jsonl(root / name / "metrics.jsonl", rows)
        (root / name / "config.yaml").write_text(f"output_dir: {root / name}\n")
    _write_jsonl(root / "pipeline.jsonl", [{"name": n, "stage": n, "status": "done", "seconds": 12.5, "metrics": {}}
                                           for n in ("sft", "rm", "ppo", "grpo")])
    _write_jsonl(root / "evaluations.jsonl", [
        {"policy": "sft", "reward": 0.1, "kl": 0.0, "win_rate": 0.5, "judge": "gold"},
        {"policy": "ppo-best-of-4", "reward": 0.55, "kl": 0.08, "win_rate": 0.71, "judge": "gold"},
        {"policy": "ppo", "win_rate": 0.64, "judge": "llm-judge"},
    ])
    samples = [{"prompt": "Write a short review of <b>Heat</b>.", "completion": EVIL, "score": 0.25},
               {"prompt": "Name a prime.", "completion": "7", "score": 1.0}]
    (root / "eval_sft").mkdir()
    (root / "eval_sft" / "eval.json").write_text(json.dumps(
        {"model": str(root / "sft/final"), "dataset": "task:sentiment:test:50", "num_prompts": 50, "score": 0.51,
         "pass@1": 0.51, "mean_length": 47.2, "samples": samples}))
    (root / "eval_ppo.json").write_text(json.dumps(
        {"model": str(root / "ppo/final"), "dataset": "task:sentiment:test:50", "num_prompts": 50, "score": 0.68,
         "mean_length": 52.0, "samples": [{"prompt": samples[0]["prompt"], "completion": "A taut, brilliant heist film.",
                                           "score": 0.93}]}))
    return root


@pytest.fixture()
def report(tmp_path):
    run_dir = make_pipeline_dir(tmp_path / "run")
    return run_dir, write_report(run_dir).read_text(encoding="utf-8")


def test_collect_reads_stages_evaluations_and_samples(tmp_path):
    data = collect(make_pipeline_dir(tmp_path / "run"))
    assert [(r.name, r.stage, r.steps) for r in data.runs] == [("sft", "sft", 60), ("rm", "rm", 40), ("ppo", "ppo", 30), ("grpo", "grpo", 20)]
    assert {r.policy for r in data.eval_reports} == {"eval_sft", "eval_ppo"}
    points = {p.policy: (p.reward, p.kl) for p in reward_kl_points(data)}
    # evaluations.jsonl rows with both numbers only: training-log points have other units
    assert points["sft"] == (0.1, 0.0) and points["ppo-best-of-4"] == (0.55, 0.08)
    assert "ppo" not in points and "grpo" not in points
    data.evaluations = []  # without evaluations: each RL stage's last reward/mean and kl/k1
    points = {p.policy: (p.reward, p.kl) for p in reward_kl_points(data)}
    assert points["ppo"] == pytest.approx((0.1 + 0.5 * (1 - math.exp(-30 / 8)), 0.12))
    assert points["grpo"] == pytest.approx((0.6, 0.04))
    assert len(data.samples) == 3


def test_report_is_self_contained_with_every_section(report):
    run_dir, html = report
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html
    for section in ("summary", "evaluations", "reward-kl", "win-rates", "rm-accuracy", "curves", "samples"):
        assert f'<section id="{section}">' in html
    assert "0.715" in html  # rm eval_accuracy
    assert "0.71" in html and "llm-judge" in html  # win rates and the judge
    assert html.count("<h3>") == 4  # one block of curves per stage


def test_embedded_pngs_decode(report):
    from PIL import Image

    _, html = report
    blobs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # 3 bar charts, 1 scatter, curves: sft 1 (loss), rm 2 (loss, accuracy), ppo 5, grpo 5
    assert len(blobs) == 3 + 1 + 1 + 2 + 5 + 5
    for blob in blobs:
        raw = base64.b64decode(blob, validate=True)
        assert raw.startswith(PNG_MAGIC)
        image = Image.open(io.BytesIO(raw))
        image.load()
        assert image.width > 200 and image.height > 150


def test_completions_are_escaped(report):
    _, html = report
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; done" in html
    assert "Write a short review of &lt;b&gt;Heat&lt;/b&gt;." in html


def test_cli_writes_report_and_rejects_bad_dirs(tmp_path, capsys):
    run_dir = make_pipeline_dir(tmp_path / "run")
    out = tmp_path / "page.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("posttrain: error:") and "holds no runs" in err and err.strip().count("\n") == 0


def test_single_stage_dir(tmp_path):
    run_dir = make_pipeline_dir(tmp_path / "run") / "grpo"
    html = write_report(run_dir).read_text()
    assert (run_dir / "report.html").is_file()
    assert '<section id="reward-kl">' in html and '<section id="rm-accuracy">' not in html


def test_reward_hacking_panel_shows_share_at_max_jumps_and_the_gap(tmp_path):
    """A GRPO run whose trained reward saturates at step 8 while the monitor (gold) stays flat."""
    rows = []
    for s in range(1, 13):
        hacked = s >= 8
        rows.append({"step": s, "loss": 0.0, "reward/mean": 0.95 if hacked else 0.3, "reward/format/mean": 0.95 if hacked else 0.3,
                     "reward/format/at_max": 0.9 if hacked else 0.1, "reward/format/jump": float(s == 8),
                     "reward/format/jump_z": 14.5 if s == 8 else 0.2, "monitor/gold/at_max": 0.05,
                     "monitor/gold/jump": 0.0, "monitor/gold/jump_z": 0.0, "monitor/gold/proxy": 0.95 if hacked else 0.3,
                     "monitor/gold/gold": 0.25, "monitor/gold/gap": 0.7 if hacked else 0.05})
    _write_jsonl(tmp_path / "grpo" / "metrics.jsonl", rows)
    html = write_report(tmp_path / "grpo").read_text()
    section = html[html.index('<section id="reward-hacking">'):]
    section = section[:section.index("</section>")]
    assert '<a href="#reward-hacking">Reward hacking</a>' in html
    assert len(re.findall(r'src="data:image/png;base64,', section)) == 2  # share at max; proxy vs gold
    assert 'alt="grpo: share at max"' in section and 'alt="grpo: proxy vs gold: gold"' in section
    assert "<td>reward/format</td><td class='num'>8</td><td class='num'>14.5</td>" in section  # the jump, with its step
    assert "<b>gold gap</b> 0.7" in section  # the last gap
    plain = make_pipeline_dir(tmp_path / "run")  # runs without the diagnostics: no section
    assert '<section id="reward-hacking">' not in write_report(plain).read_text()


def test_an_agent_run_gets_its_episodes_milestones_and_cascade_tiers(tmp_path):
    rows = [{"step": s, "loss": 0.0, "reward/mean": 0.2 * s, "agent/turns": 2.0 + s, "agent/tool_calls": 1.0 * s,
             "agent/tool_success": 0.5 + 0.1 * s, "agent/success": 0.1 * s, "milestone/form": 0.25 * s,
             "milestone/goal": 0.1 * s, "cascade/rule": 0.9, "cascade/judge": 0.1} for s in (1, 2, 3)]
    _write_jsonl(tmp_path / "grpo" / "metrics.jsonl", rows)
    html = write_report(tmp_path / "grpo").read_text()
    section = html[html.index('<section id="agents">'):]
    section = section[:section.index("</section>")]
    for key, first, last in (("agent/turns", "3", "5"), ("agent/tool_success", "0.6", "0.8"), ("milestone/form", "0.25", "0.75"),
                             ("cascade/judge", "0.1", "0.1")):
        assert f"<td>{key}</td><td class='num'>{first}</td><td class='num'>{last}</td>" in section
    curves = html[html.index('<section id="curves">'):]
    for panel in ("Milestones reached (share of episodes)", "Confidence cascade: the tier that decided", "Per episode: turns, tool calls, errors"):
        assert f'alt="grpo: {panel}"' in curves
    assert '<section id="agents">' not in write_report(make_pipeline_dir(tmp_path / "run")).read_text()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium on PATH (apt-get install chromium to run this test)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    run_dir, _ = report
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", f"--screenshot={shot}",
           "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'profile'}", (run_dir / "report.html").as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200  # text, charts, the dark header: not a blank page
    # the dark header is drawn at the top and the light page body below it
    assert sum(image.getpixel((640, 20))) < 150 and sum(image.getpixel((640, 400))) > 600
    assert shot.stat().st_size > 50_000, sys.platform


def test_proxy_vs_gold_across_rounds_is_a_table_and_a_chart_per_monitor(tmp_path):
    """Iterative RLHF's monitor: two GRPO rounds logging the gold as a monitor; the section lists each round's
    last proxy, its first and last gold, the gap and the correlation, in pipeline order."""
    for name, (proxy, gold) in (("grpo1", (0.6, 0.5)), ("grpo2", (0.9, 0.55))):
        rows = [{"step": s, "loss": 0.0, "monitor/gold/at_max": 0.0, "monitor/gold/proxy": proxy * s / 4,
                 "monitor/gold/gold": gold * s / 4, "monitor/gold/gap": (proxy - gold) * s / 4, "monitor/gold/correlation": 0.8}
                for s in (1, 2, 3, 4)]
        _write_jsonl(tmp_path / name / "metrics.jsonl", rows)
        (tmp_path / name / "config.yaml").write_text(f"output_dir: {tmp_path / name}\n")
    _write_jsonl(tmp_path / "pipeline.jsonl", [{"name": n, "stage": "grpo", "status": "done", "seconds": 1.0, "metrics": {}}
                                               for n in ("grpo1", "grpo2")])
    html = write_report(tmp_path).read_text()
    section = html[html.index('<section id="proxy-gold-rounds">'):]
    section = section[:section.index("</section>")]
    assert len(re.findall(r'src="data:image/png;base64,', section)) == 1 and 'alt="proxy vs gold by round: gold"' in section
    cells = re.findall(r"<tr><td>(\w+)<span class='tag'>grpo</span></td>((?:<td class='num'>[^<]*</td>)+)</tr>", section)
    values = [(name, re.findall(r"<td class='num'>([^<]*)</td>", tds)) for name, tds in cells]
    assert values == [("grpo1", ["0.6", "0.125", "0.5", "0.1", "0.8"]), ("grpo2", ["0.9", "0.1375", "0.55", "0.35", "0.8"])]
    from posttrain.report.html import _proxy_gold_rounds

    assert _proxy_gold_rounds(collect(tmp_path / "grpo1")) == ""  # a single run: its own hacking panel only


def test_an_online_dpo_run_directory_is_named_by_its_metrics(tmp_path):
    from posttrain.report.collect import _infer_stage

    assert _infer_stage(tmp_path / "run", [{"step": 1, "reward/mean": 0.5, "rewards/margins": 0.1, "pairs/ties": 0.2}]) == "online_dpo"
    assert _infer_stage(tmp_path / "run", [{"step": 1, "reward/mean": 0.5}]) == "grpo"
