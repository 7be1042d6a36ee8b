"""A project's progress: items complete, labels per person, agreement (the admin page and `annotate status`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from posttrain.annotate.export import export_rows, standing_labels
from posttrain.annotate.store import annotators, labels, read_project, reading, skips


def project_status(engine: Engine) -> dict:
    info = read_project(engine)
    all_items, by_item = standing_labels(engine)
    complete = sum(len(by_item.get(item["id"], [])) >= info["overlap"] for item in all_items)
    _, _, summary = export_rows(engine, info["mode"])
    with reading(engine) as conn:
        standing = dict(conn.execute(select(labels.c.annotator_id, func.count()).where(labels.c.undone_at.is_(None))
                                     .group_by(labels.c.annotator_id)).all())
        last = dict(conn.execute(select(labels.c.annotator_id, func.max(labels.c.created_at))
                                 .group_by(labels.c.annotator_id)).all())
        skipped = dict(conn.execute(select(skips.c.annotator_id, func.count()).group_by(skips.c.annotator_id)).all())
        people = conn.execute(select(annotators.c.id, annotators.c.name, annotators.c.role).order_by(annotators.c.id)).all()
    return {
        "project": {key: info[key] for key in ("name", "mode", "k", "overlap")},
        "items": len(all_items), "complete": complete, "labels": summary["labels"], "ties": summary["ties"],
        "agreement": summary["agreement_mean"],
        "annotators": [{"name": p.name, "role": p.role, "labels": standing.get(p.id, 0), "skips": skipped.get(p.id, 0),
                        "last_label_at": last[p.id].isoformat(timespec="seconds") + "Z" if p.id in last else None}
                       for p in people],
    }


def format_status(status: dict) -> str:
    """The status as the lines `posttrain annotate status` prints."""
    p = status["project"]
    agreement = f"{status['agreement']:.3f}" if status["agreement"] is not None else (
        "n/a (needs overlap >= 2)" if p["overlap"] < 2 else "n/a (no item has 2 labels yet)")
    lines = [f"project {p['name']}: {p['mode']}, K={p['k']}, {p['overlap']} label(s) per item",
             f"items complete: {status['complete']}/{status['items']}, labels: {status['labels']} (ties {status['ties']}), "
             f"mean agreement: {agreement}", "", f"{'annotator':<20} {'role':<10} {'labels':>7} {'skips':>6}  last label"]
    for a in status["annotators"]:
        lines.append(f"{a['name']:<20} {a['role']:<10} {a['labels']:>7} {a['skips']:>6}  {a['last_label_at'] or '-'}")
    return "\n".join(lines)
