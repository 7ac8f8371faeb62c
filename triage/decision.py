"""Per-category abstention thresholds and the action taken on a prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triage.catalogue import BY_SLUG, OTHER, SELF_SERVE_SLUGS, STAFF_ONLY_SLUGS, TRIAGE_QUEUE

AUTO_REPLY, ROUTE, TRIAGE = "auto_reply", "route", "triage"
PROB_GRID = tuple(round(x, 2) for x in np.arange(0.30, 1.0001, 0.01))
MARGIN_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
NEVER = {"prob": 1.01, "margin": 1.01}  # a threshold nothing reaches: the category never acts alone


@dataclass
class Thresholds:
    """Minimum top probability and margin per category before acting without a human."""

    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    auto_reply_target: float = 0.98
    route_target: float = 0.9

    def for_category(self, slug: str) -> dict[str, float]:
        """The (prob, margin) pair for a category; unknown categories never pass."""
        return self.per_category.get(slug, NEVER)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for metadata.json."""
        return {"auto_reply_target": self.auto_reply_target, "route_target": self.route_target,
                "per_category": self.per_category}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        """Inverse of to_dict."""
        return cls(dict(data["per_category"]), float(data["auto_reply_target"]), float(data["route_target"]))


@dataclass(frozen=True)
class Decision:
    """What to do with one email: category, confidence, action, queue and the runners-up."""

    category: str
    confidence: float
    margin: float
    action: str
    queue: str
    alternatives: list[tuple[str, float]]

    def as_json(self) -> dict[str, Any]:
        """The classify contract's fields (without id)."""
        return {"category": self.category, "confidence": round(self.confidence, 4), "action": self.action,
                "queue": self.queue, "alternatives": [[s, round(p, 4)] for s, p in self.alternatives]}  # fmt: skip


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the top class, its probability, and the margin to the runner-up, row by row."""
    order = np.argsort(-probs, axis=1)
    rows = np.arange(probs.shape[0])
    top = probs[rows, order[:, 0]]
    second = probs[rows, order[:, 1]] if probs.shape[1] > 1 else np.zeros_like(top)
    return order[:, 0], top, top - second


def action_for(slug: str, prob: float, margin: float, thresholds: Thresholds) -> str:
    """auto_reply for a confident self-serve category, route for a confident staff-only one, else triage."""
    if slug == OTHER:
        return TRIAGE
    limit = thresholds.for_category(slug)
    confident = prob >= limit["prob"] and margin >= limit["margin"]
    if not confident:
        return TRIAGE
    return AUTO_REPLY if slug in SELF_SERVE_SLUGS else ROUTE


def decide_rows(
    probs: np.ndarray,
    classes: Sequence[str],
    thresholds: Thresholds,
    routing: Mapping[str, str] | None = None,
    n_alternatives: int = 3,
) -> list[Decision]:
    """Turn a matrix of class probabilities into decisions (queue from routing, else the catalogue)."""
    routing = routing or {}
    best, top, margin = top_two(probs)
    order = np.argsort(-probs, axis=1)[:, 1 : 1 + n_alternatives]
    decisions = []
    for i in range(probs.shape[0]):
        slug = classes[best[i]]
        action = action_for(slug, float(top[i]), float(margin[i]), thresholds)
        queue = TRIAGE_QUEUE if action == TRIAGE else routing.get(slug, BY_SLUG[slug].default_queue)
        alts = [(classes[j], float(probs[i, j])) for j in order[i]]
        decisions.append(Decision(slug, float(top[i]), float(margin[i]), action, queue, alts))
    return decisions


def choose_thresholds(
    y_true: Sequence[str],
    probs: np.ndarray,
    classes: Sequence[str],
    auto_reply_target: float = 0.98,
    route_target: float = 0.9,
    min_support: int = 5,
    costly_error_weight: float = 3.0,
) -> Thresholds:
    """Pick, per category, the (prob, margin) pair with the most correct acceptances whose precision meets the target.

    `probs` must be out-of-fold predictions. A wrong auto-reply to an `other` or staff-only email (which
    the gate caps separately) counts as `costly_error_weight` errors. A category that cannot reach its
    target with at least `min_support` correct acceptances never acts alone.
    """
    truth = np.asarray(y_true)
    best, top, margin = top_two(probs)
    predicted = np.asarray(classes)[best]
    costly = np.isin(truth, [*STAFF_ONLY_SLUGS, OTHER])
    chosen: dict[str, dict[str, float]] = {}
    for slug in classes:
        if slug == OTHER:
            continue
        self_serve = slug in SELF_SERVE_SLUGS
        target = auto_reply_target if self_serve else route_target
        mask = predicted == slug
        p, m, ok = top[mask], margin[mask], truth[mask] == slug
        error_weight = np.where(costly[mask] & self_serve, costly_error_weight, 1.0)
        pick, pick_key = dict(NEVER), (0, 0.0, 0.0)
        for m_min in MARGIN_GRID:
            for p_min in PROB_GRID:
                accepted = (p >= p_min) & (m >= m_min)
                correct = int((accepted & ok).sum())
                if correct < min_support:
                    break  # higher prob thresholds only accept fewer
                errors = float(error_weight[accepted & ~ok].sum())
                if correct / (correct + errors) < target:
                    continue
                key = (correct, -p_min, -m_min)  # most coverage, then the stricter pair
                if key > pick_key:
                    pick, pick_key = {"prob": float(p_min), "margin": float(m_min)}, key
        chosen[slug] = pick
    return Thresholds(chosen, auto_reply_target, route_target)
