"""`posttrain report RUN_DIR [--out FILE]`: one self-contained HTML page with the run's plots.

Training curves, reward vs KL of every evaluated policy, win rates against SFT, reward-model
accuracy and sample completions side by side; see docs/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from posttrain.errors import UserError


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Read RUN_DIR, write the report (default RUN_DIR/report.html), return its path."""
    from posttrain.report.collect import collect
    from posttrain.report.html import render_html

    data = collect(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    if path.parent and not path.parent.is_dir():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(data), encoding="utf-8")
    tmp.replace(path)  # never a half-written report
    return path


def report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="posttrain report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="a stage's or a pipeline's output_dir")
    parser.add_argument("--out", "-o", default=None, help="where to write the HTML (default RUN_DIR/report.html)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    path = write_report(args.run_dir, args.out)
    print(f"wrote {path}")
    return 0
