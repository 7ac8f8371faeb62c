"""Evaluation figures for a classifier: per-category scores and the auto-reply figures the gate
checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from triage.catalogue import OTHER, SELF_SERVE_SLUGS, SLUGS, STAFF_ONLY_SLUGS
from triage.classifier.decision import AUTO_REPLY, ROUTE, TRIAGE, Decision


@dataclass(frozen=True)
class QualityTargets:
    """The quality gate's floors and ceilings."""

    auto_reply_precision: float = 0.98
    coverage: float = 0.75
    macro_f1: float = 0.90
    other_auto_replied: float = 0.02
    staff_only_auto_replied: float = 0.01


def _share(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else 0.0


RISK_COVERAGE_POINTS = 40
COVERAGE_LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def risk_coverage(y_true: Sequence[str], decisions: Sequence[Decision]) -> list[dict[str, float]]:
    """The risk-coverage curve of the model's confidence on self-serve answers.

    Emails whose top category is self-serve (and that a rule did not hold for staff) are answered in
    order of confidence; each point is a confidence threshold with the coverage of self-serve mail
    it would reach and the risk (share of wrong answers) it would take. At most RISK_COVERAGE_POINTS
    points.
    """
    truth = np.asarray(y_true, dtype=object)
    n_self_serve = max(1, int(np.isin(truth, list(SELF_SERVE_SLUGS)).sum()))
    candidates = [
        (d.confidence, d.category == y)
        for d, y in zip(decisions, truth, strict=True)
        if d.category in SELF_SERVE_SLUGS and not d.reason
    ]
    candidates.sort(key=lambda c: -c[0])
    if not candidates:
        return []
    right = np.cumsum([c[1] for c in candidates])
    answered = np.arange(1, len(candidates) + 1)
    step = max(1, len(candidates) // RISK_COVERAGE_POINTS)
    keep = sorted({*range(step - 1, len(candidates), step), len(candidates) - 1})
    return [
        {
            "threshold": float(candidates[i][0]),
            "coverage": float(right[i] / n_self_serve),
            "risk": float(1 - right[i] / answered[i]),
            "answered": int(answered[i]),
        }
        for i in keep
    ]


def answered_right(y_true: Sequence[str], decisions: Sequence[Decision]) -> np.ndarray:
    """Row by row, whether an automatic answer went and covers the true category (a combined
    family answer covers each of its members)."""
    return np.fromiter(
        (y in d.answer_covers for d, y in zip(decisions, y_true, strict=True)), bool, len(y_true)
    )


def per_writer(
    y_true: Sequence[str], decisions: Sequence[Decision], groups: Sequence[str]
) -> dict[str, Any]:
    """Auto-reply precision and coverage for each writer (group) separately."""
    out = {}
    truth = np.asarray(y_true, dtype=object)
    covered = answered_right(y_true, decisions)
    group_arr = np.asarray(groups, dtype=object)
    for group in sorted(set(group_arr.tolist())):
        rows = np.flatnonzero(group_arr == group)
        auto = np.asarray([decisions[int(i)].action == AUTO_REPLY for i in rows], dtype=np.bool_)
        right = covered[rows]
        self_serve = np.isin(truth[rows], list(SELF_SERVE_SLUGS))
        out[str(group)] = {
            "n": int(rows.size),
            "auto_replied": int(auto.sum()),
            "wrong": int((auto & ~right).sum()),
            "precision": float(right[auto].mean()) if auto.any() else None,
            "coverage": _share(auto[self_serve] & right[self_serve]),
        }
    return out


def evaluate(
    y_true: Sequence[str], decisions: Sequence[Decision], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """All evaluation figures for true labels against decisions, as a JSON-ready dict (per writer
    with groups)."""
    truth = np.asarray(y_true, dtype=object)
    predicted = np.asarray([d.category for d in decisions], dtype=object)
    actions = np.asarray([d.action for d in decisions], dtype=object)
    labels = list(SLUGS)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    correct = truth == predicted
    covered = answered_right(y_true, decisions)  # an automatic answer that covers the question
    auto = actions == AUTO_REPLY
    family = np.asarray([d.family is not None for d in decisions], dtype=np.bool_)
    routed = actions == ROUTE
    self_serve = np.isin(truth, list(SELF_SERVE_SLUGS))
    staff_only = np.isin(truth, list(STAFF_ONLY_SLUGS))
    per_category_auto = {}
    for slug in sorted(SELF_SERVE_SLUGS):
        sent = auto & (predicted == slug)
        per_category_auto[slug] = {
            "auto_replied": int(sent.sum()),
            "wrong": int((sent & ~covered).sum()),
            "precision": float(covered[sent].mean()) if sent.any() else None,
            "coverage": _share(covered[truth == slug]),
        }
    return {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(
            f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)
        ),
        "per_category": {
            slug: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for slug, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "labels": labels,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "auto_reply": {
            "precision": float(covered[auto].mean()) if auto.any() else 1.0,
            "count": int(auto.sum()),
            "family_answers": int((auto & family).sum()),
            "coverage": _share(covered[self_serve]),
            "other_auto_replied": _share(auto[truth == OTHER]),
            "staff_only_auto_replied": _share(auto[staff_only]),
            "per_category": per_category_auto,
        },
        "route": {
            "count": int(routed.sum()),
            "precision": float(correct[routed].mean()) if routed.any() else 1.0,
            "by_family": int((routed & family).sum()),
        },
        "triage_share": _share(actions == TRIAGE),
        "held_for_staff": int(sum(bool(d.reason) for d in decisions)),
        "risk_coverage": risk_coverage(truth.tolist(), decisions),
        "per_writer": per_writer(truth.tolist(), decisions, groups)
        if groups is not None and any(groups)
        else {},
    }


def gate_failures(report: dict[str, Any], targets: QualityTargets, name: str) -> list[str]:
    """Reasons a report misses the targets (empty when it passes); names the categories that
    failed."""
    auto = report["auto_reply"]
    reasons = []
    if auto["precision"] < targets.auto_reply_precision:
        culprits = [
            f"{slug} ({c['wrong']} wrong of {c['auto_replied']})"
            for slug, c in auto["per_category"].items()
            if c["wrong"]
        ]
        reasons.append(
            f"{name}: auto-reply precision {auto['precision']:.3f} "
            f"< {targets.auto_reply_precision}; wrong auto-replies in: {', '.join(culprits)}"
        )
    if auto["coverage"] < targets.coverage:
        reasons.append(f"{name}: auto-reply coverage {auto['coverage']:.3f} < {targets.coverage}")
    if report["macro_f1"] < targets.macro_f1:
        weakest = sorted(report["per_category"].items(), key=lambda kv: kv[1]["f1"])[:3]
        names = ", ".join(f"{slug} F1 {v['f1']:.2f}" for slug, v in weakest)
        reasons.append(
            f"{name}: macro-F1 {report['macro_f1']:.3f} < {targets.macro_f1} (weakest: {names})"
        )
    if auto["other_auto_replied"] > targets.other_auto_replied:
        reasons.append(
            f"{name}: {auto['other_auto_replied']:.3f} of 'other' emails auto-replied > "
            f"{targets.other_auto_replied}"
        )
    if auto["staff_only_auto_replied"] > targets.staff_only_auto_replied:
        reasons.append(
            f"{name}: {auto['staff_only_auto_replied']:.3f} of staff-only emails auto-replied > "
            f"{targets.staff_only_auto_replied}"
        )
    return reasons


def format_report(report: dict[str, Any]) -> str:
    """A human-readable summary of a report for the terminal."""
    auto = report["auto_reply"]
    lines = [
        f"emails: {report['n']}   accuracy: {report['accuracy']:.3f}   "
        f"macro-F1: {report['macro_f1']:.3f}",
        f"auto-reply: precision {auto['precision']:.3f} on {auto['count']} replies "
        f"({auto.get('family_answers', 0)} combined family answers), "
        f"coverage of self-serve {auto['coverage']:.3f}, "
        f"'other' auto-replied {auto['other_auto_replied']:.3f}, "
        f"staff-only auto-replied {auto['staff_only_auto_replied']:.3f}",
        f"routed: {report['route']['count']} (precision {report['route']['precision']:.3f}); "
        f"sent to triage: {report['triage_share']:.3f}",
        "",
        f"{'category':34} {'prec':>6} {'recall':>6} {'F1':>6} {'n':>5}",
    ]
    for slug, v in report["per_category"].items():
        lines.append(
            f"{slug:34} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f} {v['support']:5d}"
        )
    if report.get("per_writer"):
        lines += [
            "",
            f"{'writer':10} {'emails':>6} {'auto-replied':>12} {'wrong':>5} {'precision':>9} "
            f"{'coverage':>8}",
        ]
        for writer, w in report["per_writer"].items():
            precision = f"{w['precision']:.3f}" if w["precision"] is not None else "-"
            lines.append(
                f"{writer:10} {w['n']:6d} {w['auto_replied']:12d} {w['wrong']:5d} {precision:>9} "
                f"{w['coverage']:8.3f}"
            )
    curve = report.get("risk_coverage") or []
    if curve:
        lines += [
            "",
            "risk-coverage (answering self-serve predictions in order of confidence):",
            f"{'coverage':>8} {'risk':>6} {'confidence >=':>13}",
        ]
        for level in COVERAGE_LEVELS:
            reached = [p for p in curve if p["coverage"] >= level]
            if reached:
                point = min(reached, key=lambda p: p["risk"])
                lines.append(f"{level:8.2f} {point['risk']:6.3f} {point['threshold']:13.3f}")
            else:
                lines.append(f"{level:8.2f} {'-':>6} {'not reached':>13}")
        lines.append(
            f"operating point: coverage {auto['coverage']:.3f} at risk {1 - auto['precision']:.3f}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted, in the order above):"]
    lines += [" ".join(f"{n:3d}" for n in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)
