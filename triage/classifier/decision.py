"""Abstention thresholds and the action taken on a prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from triage.catalogue import (
    BY_SLUG,
    OTHER,
    SELF_SERVE_SLUGS,
    SIBLINGS,
    STAFF_ONLY_SLUGS,
    TRIAGE_QUEUE,
)
from triage.states import Action

# aliases of the Action members, for modules that import these names (triage.mail.inbound, the
# worker) until they use Action themselves
AUTO_REPLY, ROUTE, TRIAGE = Action.AUTO_REPLY, Action.ROUTE, Action.TRIAGE
PROB_GRID = tuple(round(x, 2) for x in np.arange(0.30, 1.0001, 0.01))
MARGIN_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
NEVER = {"prob": 1.01, "margin": 1.01}  # a threshold nothing reaches: the category never acts alone


@dataclass
class Thresholds:
    """Minimum top probability and margin per category before acting without a human.

    `family_margin`: an auto-reply also needs the top category's probability to beat its best sibling in a
    confusable family (catalogue.FAMILIES) by this much. `policy` names how the thresholds were chosen.
    """

    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    auto_reply_target: float = 0.98
    route_target: float = 0.9
    family_margin: float = 0.0
    policy: str = "per_category"

    def for_category(self, slug: str) -> dict[str, float]:
        """The (prob, margin) pair for a category; unknown categories never pass."""
        return self.per_category.get(slug, NEVER)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for metadata.json."""
        return {
            "auto_reply_target": self.auto_reply_target,
            "route_target": self.route_target,
            "per_category": self.per_category,
            "family_margin": self.family_margin,
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        """Inverse of to_dict (metadata written before families and policies had neither: 0 and per_category)."""
        return cls(
            dict(data["per_category"]),
            float(data["auto_reply_target"]),
            float(data["route_target"]),
            float(data.get("family_margin", 0.0)),
            str(data.get("policy", "per_category")),
        )


@dataclass(frozen=True)
class Decision:
    """What to do with one email: category, confidence, action, queue and the runners-up."""

    category: str
    confidence: float
    margin: float
    action: Action
    queue: str
    alternatives: list[tuple[str, float]]
    reason: str = ""  # why the action is not the model's own (e.g. a thank-you forced to triage)

    def as_json(self) -> dict[str, Any]:
        """The classify contract's fields (without id)."""
        return {
            "category": self.category,
            "confidence": round(self.confidence, 4),
            "action": self.action,
            "queue": self.queue,
            "alternatives": [[s, round(p, 4)] for s, p in self.alternatives],
        }


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index of the top class, its probability, and the margin to the runner-up, row by row."""
    order = np.argsort(-probs, axis=1)
    rows = np.arange(probs.shape[0])
    top = probs[rows, order[:, 0]]
    second = probs[rows, order[:, 1]] if probs.shape[1] > 1 else np.zeros_like(top)
    return order[:, 0], top, top - second


def family_gaps(probs: np.ndarray, classes: Sequence[str], best: np.ndarray) -> np.ndarray:
    """Row by row, the top class's probability minus its best sibling's (1.0 for a class with no family)."""
    index = {slug: i for i, slug in enumerate(classes)}
    siblings = np.zeros((len(classes), len(classes)), dtype=bool)
    for slug, i in index.items():
        for sibling in SIBLINGS.get(slug, ()):
            if sibling in index:
                siblings[i, index[sibling]] = True
    rows = np.arange(probs.shape[0])
    sibling_best = np.where(siblings[best], probs, -np.inf).max(axis=1, initial=-np.inf)
    gap = probs[rows, best] - sibling_best
    return np.where(np.isfinite(gap), gap, 1.0)


def action_for(
    slug: str, prob: float, margin: float, thresholds: Thresholds, family_gap: float = 1.0
) -> Action:
    """auto_reply for a confident self-serve category (clear of its family), route for a confident staff-only
    one, else triage."""
    if slug == OTHER:
        return Action.TRIAGE
    limit = thresholds.for_category(slug)
    confident = prob >= limit["prob"] and margin >= limit["margin"]
    if not confident:
        return Action.TRIAGE
    if slug not in SELF_SERVE_SLUGS:
        return Action.ROUTE
    return Action.AUTO_REPLY if family_gap >= thresholds.family_margin else Action.TRIAGE


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
    gaps = family_gaps(probs, classes, best)
    order = np.argsort(-probs, axis=1)[:, 1 : 1 + n_alternatives]
    decisions = []
    for i in range(probs.shape[0]):
        slug = classes[best[i]]
        action = action_for(slug, float(top[i]), float(margin[i]), thresholds, float(gaps[i]))
        queue = (
            TRIAGE_QUEUE
            if action == Action.TRIAGE
            else routing.get(slug, BY_SLUG[slug].default_queue)
        )
        alts = [(classes[j], float(probs[i, j])) for j in order[i]]
        decisions.append(Decision(slug, float(top[i]), float(margin[i]), action, queue, alts))
    return decisions


def hold_for_staff(
    decision: Decision, probs: np.ndarray, classes: Sequence[str], reason: str
) -> Decision:
    """The decision for mail that must not be answered or routed automatically: `other`, to triage, with why."""
    other = float(probs[list(classes).index(OTHER)]) if OTHER in classes else 0.0
    ranked = [(classes[j], float(probs[j])) for j in np.argsort(-probs) if classes[j] != OTHER]
    return Decision(
        OTHER, other, 0.0, Action.TRIAGE, TRIAGE_QUEUE, ranked[: len(decision.alternatives)], reason
    )


@dataclass(frozen=True)
class _Option:
    """One threshold for one category and what it would have done on the out-of-fold predictions."""

    correct: int
    errors: float  # weighted
    other_accepted: int
    staff_accepted: int
    threshold: dict[str, float]


def _frontier(
    p: np.ndarray, m: np.ndarray, truth: np.ndarray, slug: str, weight: np.ndarray, min_support: int
) -> list[_Option]:
    """For one category, the threshold options that are best (fewest weighted errors) for their coverage."""
    ok = truth == slug
    is_other, is_staff = truth == OTHER, np.isin(truth, list(STAFF_ONLY_SLUGS))
    best: dict[int, _Option] = {}
    for m_min in MARGIN_GRID:
        for p_min in PROB_GRID:
            accepted = (p >= p_min) & (m >= m_min)
            correct = int((accepted & ok).sum())
            if correct < min_support:
                break  # higher prob thresholds only accept fewer
            option = _Option(
                correct,
                float(weight[accepted & ~ok].sum()),
                int((accepted & is_other).sum()),
                int((accepted & is_staff).sum()),
                {"prob": float(p_min), "margin": float(m_min)},
            )
            if correct not in best or option.errors < best[correct].errors:
                best[correct] = option
    options, lowest = [], float("inf")
    for correct in sorted(
        best, reverse=True
    ):  # keep only options that beat every larger one on errors
        if best[correct].errors < lowest:
            options.append(best[correct])
            lowest = best[correct].errors
    return sorted(options, key=lambda o: o.correct)


def choose_thresholds(
    y_true: Sequence[str],
    probs: np.ndarray,
    classes: Sequence[str],
    auto_reply_target: float = 0.98,
    route_target: float = 0.9,
    min_support: int = 5,
    costly_error_weight: float = 2.0,
    category_floor: float = 0.95,
    max_other_share: float = 0.004,
    max_staff_only_share: float = 0.005,
    eligible: np.ndarray | None = None,
) -> Thresholds:
    """Per-category (prob, margin) thresholds from out-of-fold predictions.

    Self-serve categories are chosen together: starting from "never", the category whose next looser
    threshold adds the most correct auto-replies per error is loosened, as long as, over all categories,
    auto-reply precision stays at or above `auto_reply_target`, at most `max_other_share` of `other`
    emails and `max_staff_only_share` of staff-only emails are auto-replied (well under the gate's caps, for
    headroom on unseen mail), and each category's own precision stays at or above `category_floor`.
    A wrong auto-reply to an `other` or staff-only email counts as `costly_error_weight` errors.
    Staff-only categories get, each on its own, the loosest threshold whose routing precision meets
    `route_target`. Rows where `eligible` is False (thank-you mail, family close calls) are never auto-replied.
    """
    truth = np.asarray(y_true)
    best, top, margin = top_two(probs)
    if eligible is not None:
        top = np.where(eligible, top, -1.0)  # below every threshold: the row never acts alone
    predicted = np.asarray(classes)[best]
    costly = np.isin(truth, [*STAFF_ONLY_SLUGS, OTHER])
    n_other = max(1, int((truth == OTHER).sum()))
    n_staff = max(1, int(np.isin(truth, list(STAFF_ONLY_SLUGS)).sum()))
    frontiers: dict[str, list[_Option]] = {}
    chosen: dict[str, dict[str, float]] = {}
    for slug in classes:
        if slug == OTHER:
            continue
        mask = predicted == slug
        self_serve = slug in SELF_SERVE_SLUGS
        weight = np.where(costly[mask] & self_serve, costly_error_weight, 1.0)
        floor = category_floor if self_serve else route_target
        options = [
            o
            for o in _frontier(top[mask], margin[mask], truth[mask], slug, weight, min_support)
            if o.correct / (o.correct + o.errors) >= floor
        ]
        if self_serve:
            frontiers[slug] = options
        chosen[slug] = options[-1].threshold if options and not self_serve else dict(NEVER)
    none = _Option(0, 0.0, 0, 0, dict(NEVER))
    current = dict.fromkeys(frontiers, none)
    while True:
        totals = [
            sum(getattr(o, f) for o in current.values())
            for f in ("correct", "errors", "other_accepted", "staff_accepted")
        ]
        best_move, best_rate = None, -1.0
        for slug, options in frontiers.items():
            here = current[slug]
            for option in options:
                if option.correct <= here.correct:
                    continue
                d = [
                    option.correct - here.correct,
                    option.errors - here.errors,
                    option.other_accepted - here.other_accepted,
                    option.staff_accepted - here.staff_accepted,
                ]
                correct, errors, other, staff = (t + x for t, x in zip(totals, d, strict=True))
                if (
                    correct / (correct + errors) < auto_reply_target
                    or other / n_other > max_other_share
                    or staff / n_staff > max_staff_only_share
                ):
                    continue
                rate = d[0] / (d[1] + 0.5)
                if rate > best_rate:
                    best_move, best_rate = (slug, option), rate
        if best_move is None:
            break
        current[best_move[0]] = best_move[1]
    for slug, option in current.items():
        chosen[slug] = option.threshold
    return Thresholds(chosen, auto_reply_target, route_target)
