"""Threshold policies compared by nested leave-one-writer-out evaluation; the one training keeps.

Every policy turns out-of-fold probabilities into `Thresholds`:

- `global`: one probability threshold for every self-serve category;
- `per_category`: each category its own probability and margin (decision.choose_thresholds);
- `shrunk`: per-category thresholds pulled towards the global one, the more the fewer examples a
  category has;
- `margin`: one minimum gap between the top two probabilities, for every self-serve category.

Each also picks a family margin (how far the answer must beat its confusable siblings). Nested: for
each writer, the policy is fitted on the other writers' rows only and scored on that writer's rows.
The caps on `other` and staff-only auto-replies are decision.MAX_OTHER_SHARE and
MAX_STAFF_ONLY_SHARE, for every policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.catalogue import FAMILY_OF, OTHER, SELF_SERVE_SLUGS, STAFF_ONLY_SLUGS
from triage.classifier.decision import (
    MAX_OTHER_SHARE,
    MAX_STAFF_ONLY_SHARE,
    NEVER,
    PROB_GRID,
    Thresholds,
    choose_thresholds,
    family_gaps,
    family_probabilities,
    top_two,
)

POLICIES = ("global", "per_category", "shrunk", "margin")
FAMILY_GRID = (0.0, 0.1, 0.2, 0.3, 0.4)
# the summed family probability from which a family of self-serve members gets its combined answer
# (first: never)
FAMILY_ANSWER_GRID = (NEVER["prob"], 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
MARGIN_RULE_GRID = tuple(round(x, 2) for x in np.arange(0.0, 1.0001, 0.02))
SHRINK_EXAMPLES = (
    100  # a category with this many examples gets half its own threshold, half the global one
)
COSTLY_ERROR_WEIGHT = 2.0
MIN_WRITER_REPLIES = (
    10  # a writer's precision counts towards "worst writer" only with this many auto-replies
)


@dataclass(frozen=True)
class Scored:
    """Out-of-fold predictions reduced to what every policy needs, one entry per email."""

    truth: np.ndarray
    predicted: np.ndarray
    top: np.ndarray
    margin: np.ndarray
    family_gap: np.ndarray
    acknowledgement: np.ndarray
    probs: np.ndarray
    classes: tuple[str, ...]
    family_probability: np.ndarray  # the top category's family's summed probability
    combinable: np.ndarray  # the top category's family may get one combined answer
    in_family: np.ndarray  # the true category is in the top category's family

    @classmethod
    def build(
        cls,
        truth: Sequence[str],
        probs: np.ndarray,
        classes: Sequence[str],
        acknowledgement: np.ndarray | None = None,
    ) -> Scored:
        """Score arrays for a probability matrix; `acknowledgement` marks thank-you mail (never
        auto-replied)."""
        best, top, margin = top_two(probs)
        ack = (
            np.zeros(len(truth), dtype=bool)
            if acknowledgement is None
            else np.asarray(acknowledgement, bool)
        )
        predicted = np.asarray(classes, dtype=object)[best]
        families = [FAMILY_OF.get(str(slug)) for slug in predicted]
        return cls(
            np.asarray(truth, dtype=object),
            predicted,
            top,
            margin,
            family_gaps(probs, classes, best),
            ack,
            probs,
            tuple(classes),
            family_probabilities(probs, classes, best),
            np.array([f is not None and f.self_serve for f in families], dtype=bool),
            np.array(
                [f is not None and y in f.members for f, y in zip(families, truth, strict=True)],
                dtype=bool,
            ),
        )

    def subset(self, mask: np.ndarray) -> Scored:
        """The rows where mask is True."""
        return Scored(
            self.truth[mask],
            self.predicted[mask],
            self.top[mask],
            self.margin[mask],
            self.family_gap[mask],
            self.acknowledgement[mask],
            self.probs[mask],
            self.classes,
            self.family_probability[mask],
            self.combinable[mask],
            self.in_family[mask],
        )

    def auto_replied(self, thresholds: Thresholds) -> np.ndarray:
        """Which rows the thresholds would answer automatically, alone or by their family."""
        answered: np.ndarray = self.single_answers(thresholds) | self.family_answers(thresholds)
        return answered

    def family_answers(self, thresholds: Thresholds) -> np.ndarray:
        """Which rows would get a combined family answer (as decision.family_action decides)."""
        combined: np.ndarray = (
            self.combinable
            & ~self.acknowledgement
            & (self.family_probability >= thresholds.family_answer)
            & ~self.single_answers(thresholds)
        )
        return combined

    def outcome(self, thresholds: Thresholds) -> Outcome:
        """What the thresholds' automatic answers would do on these rows."""
        return Outcome.of(self, self.single_answers(thresholds), self.family_answers(thresholds))

    def single_answers(self, thresholds: Thresholds) -> np.ndarray:
        """Which rows the thresholds would answer with their category's own answer (as
        decision.action_for does)."""
        index = np.searchsorted(self._sorted_classes, self.predicted.astype(str))
        prob = np.array([thresholds.for_category(c)["prob"] for c in self._sorted_classes])[index]
        margin = np.array([thresholds.for_category(c)["margin"] for c in self._sorted_classes])[
            index
        ]
        replied: np.ndarray = (
            self.self_serve
            & ~self.acknowledgement
            & (self.top >= prob)
            & (self.margin >= margin)
            & (self.family_gap >= thresholds.family_margin)
        )
        return replied

    @property
    def _sorted_classes(self) -> np.ndarray:
        return np.array(sorted(self.classes))

    @property
    def self_serve(self) -> np.ndarray:
        """Rows whose top category is self-serve."""
        return np.isin(self.predicted, list(SELF_SERVE_SLUGS))


@dataclass(frozen=True)
class Outcome:
    """What a set of auto-replies did: counts, precision, coverage and the costly mistakes."""

    replies: int
    correct: int
    self_serve: int
    other_replied: int
    n_other: int
    staff_replied: int
    n_staff: int

    @classmethod
    def of(cls, scored: Scored, auto: np.ndarray, combined: np.ndarray | None = None) -> Outcome:
        """Count the outcome of answering the rows in `auto` alone and those in `combined` with
        their family's combined answer (right when the true category is in the family)."""
        right = scored.truth == scored.predicted
        if combined is not None:
            right = np.where(combined, scored.in_family, right)
            auto = auto | combined
        is_other, is_staff = scored.truth == OTHER, np.isin(scored.truth, list(STAFF_ONLY_SLUGS))
        return cls(
            int(auto.sum()),
            int((auto & right).sum()),
            int(np.isin(scored.truth, list(SELF_SERVE_SLUGS)).sum()),
            int((auto & is_other).sum()),
            int(is_other.sum()),
            int((auto & is_staff).sum()),
            int(is_staff.sum()),
        )

    @property
    def precision(self) -> float:
        """Share of auto-replies that were right (1.0 with none)."""
        return self.correct / self.replies if self.replies else 1.0

    @property
    def weighted_precision(self) -> float:
        """Precision with a wrong answer to `other` or staff-only mail counted COSTLY_ERROR_WEIGHT
        times."""
        costly = self.other_replied + self.staff_replied
        errors = self.replies - self.correct + (COSTLY_ERROR_WEIGHT - 1) * costly
        return self.correct / (self.correct + errors) if self.replies else 1.0

    @property
    def coverage(self) -> float:
        """Share of self-serve mail answered correctly."""
        return self.correct / self.self_serve if self.self_serve else 0.0

    def within(self, target: float) -> bool:
        """True when precision meets `target` and the caps on `other` and staff-only mail hold."""
        return (
            self.weighted_precision >= target
            and self.other_replied <= MAX_OTHER_SHARE * max(1, self.n_other)
            and self.staff_replied <= MAX_STAFF_ONLY_SHARE * max(1, self.n_staff)
        )


def _uniform(prob: float, margin: float, base: Thresholds) -> dict[str, dict[str, float]]:
    """Every self-serve category at (prob, margin); staff-only ones keep their routing ones."""
    out = {
        slug: dict(limit)
        for slug, limit in base.per_category.items()
        if slug not in SELF_SERVE_SLUGS
    }
    out.update({slug: {"prob": prob, "margin": margin} for slug in SELF_SERVE_SLUGS})
    return out


def _routing(scored: Scored, target: float) -> Thresholds:
    """Thresholds for staff-only routing (and a per-category start for self-serve), by decision."""
    return choose_thresholds(
        list(scored.truth),
        scored.probs,
        scored.classes,
        auto_reply_target=target,
        eligible=~scored.acknowledgement,
    )


def _best_uniform(scored: Scored, target: float, policy: str, base: Thresholds) -> Thresholds:
    """The (prob or margin, family margin) setting with most correct auto-replies within target."""
    best: tuple[int, Thresholds] | None = None
    values = PROB_GRID if policy == "global" else MARGIN_RULE_GRID
    for family_answer in FAMILY_ANSWER_GRID:
        for family_margin in FAMILY_GRID:
            # loosest first: the first setting within target is the one with most replies
            for value in values:
                prob, margin = (value, 0.0) if policy == "global" else (0.0, value)
                thresholds = Thresholds(
                    _uniform(prob, margin, base),
                    target,
                    base.route_target,
                    family_margin,
                    policy,
                    family_answer,
                )
                outcome = scored.outcome(thresholds)
                if outcome.within(target):
                    if best is None or outcome.correct > best[0]:
                        best = (outcome.correct, thresholds)
                    break
    if best is None:
        return Thresholds(
            _uniform(NEVER["prob"], NEVER["margin"], base), target, base.route_target, 0.0, policy
        )
    return best[1]


def _best_per_category(scored: Scored, target: float) -> Thresholds:
    """decision.choose_thresholds with the family margin that leaves most correct auto-replies."""
    best: tuple[int, Thresholds] | None = None
    self_serve = np.isin(scored.predicted, list(SELF_SERVE_SLUGS))
    for family_margin in FAMILY_GRID:
        eligible = ~scored.acknowledgement & (~self_serve | (scored.family_gap >= family_margin))
        thresholds = choose_thresholds(
            list(scored.truth),
            scored.probs,
            scored.classes,
            auto_reply_target=target,
            eligible=eligible,
        )
        thresholds.family_margin, thresholds.policy = family_margin, "per_category"
        correct = scored.outcome(thresholds).correct
        if best is None or correct > best[0]:
            best = (correct, thresholds)
    assert best is not None
    return best[1]


def _shrunk(scored: Scored, target: float) -> Thresholds:
    """Per-category thresholds pulled towards the global one, then raised together to target."""
    own = _best_per_category(scored, target)
    glob = _best_uniform(scored, target, "global", own)
    g = glob.for_category(next(iter(SELF_SERVE_SLUGS)))["prob"]
    counts = {slug: int((scored.truth == slug).sum()) for slug in SELF_SERVE_SLUGS}
    per_category = dict(own.per_category)
    for slug in SELF_SERVE_SLUGS:
        mine = own.for_category(slug)
        w = counts[slug] / (counts[slug] + SHRINK_EXAMPLES)
        prob = (
            g if mine["prob"] > 1 else w * mine["prob"] + (1 - w) * g
        )  # "never" alone: the global one
        per_category[slug] = {"prob": prob, "margin": w * min(mine["margin"], 1.0)}
    family_margin = max(own.family_margin, glob.family_margin)
    for raise_by in np.arange(0.0, 0.7, 0.01):
        raised = {
            s: (
                {"prob": min(1.01, v["prob"] + raise_by), "margin": v["margin"]}
                if s in SELF_SERVE_SLUGS
                else v
            )
            for s, v in per_category.items()
        }
        thresholds = Thresholds(raised, target, own.route_target, family_margin, "shrunk")
        if scored.outcome(thresholds).within(target):
            return thresholds
    return Thresholds(
        _uniform(NEVER["prob"], NEVER["margin"], own), target, own.route_target, 0.0, "shrunk"
    )


def fit_policy(policy: str, scored: Scored, target: float = 0.98) -> Thresholds:
    """Fit one policy's thresholds on out-of-fold predictions."""
    if policy == "per_category":
        return _best_per_category(scored, target)
    if policy == "shrunk":
        return _shrunk(scored, target)
    if policy in ("global", "margin"):
        return _best_uniform(scored, target, policy, _routing(scored, target))
    raise ValueError(f"unknown threshold policy {policy!r}; known: {', '.join(POLICIES)}")


@dataclass(frozen=True)
class PolicyResult:
    """A policy's nested leave-one-writer-out figures."""

    policy: str
    target: float
    pooled: Outcome
    per_writer: dict[str, Outcome]

    @property
    def mean_precision(self) -> float:
        """Mean of the writers' auto-reply precision (writers with enough replies)."""
        values = self._writer_precisions()
        return float(np.mean(values)) if values else 1.0

    @property
    def worst_precision(self) -> float:
        """The lowest writer's auto-reply precision (writers with enough replies)."""
        values = self._writer_precisions()
        return float(min(values)) if values else 1.0

    def _writer_precisions(self) -> list[float]:
        return [o.precision for o in self.per_writer.values() if o.replies >= MIN_WRITER_REPLIES]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures for metadata and reports."""
        p = self.pooled
        return {
            "policy": self.policy,
            "target": self.target,
            "precision": p.precision,
            "coverage": p.coverage,
            "mean_writer_precision": self.mean_precision,
            "worst_writer_precision": self.worst_precision,
            "replies": p.replies,
            "wrong": p.replies - p.correct,
            "other_auto_replied": p.other_replied / max(1, p.n_other),
            "staff_only_auto_replied": p.staff_replied / max(1, p.n_staff),
            "per_writer": {
                w: {
                    "precision": o.precision,
                    "coverage": o.coverage,
                    "replies": o.replies,
                    "wrong": o.replies - o.correct,
                }
                for w, o in sorted(self.per_writer.items())
            },
        }


def nested_evaluation(
    scored: Scored, groups: Sequence[str], policy: str, target: float = 0.98
) -> PolicyResult:
    """Fit `policy` without each writer in turn, score it on that writer: pooled and per writer."""
    groups_arr = np.asarray(groups, dtype=object)
    auto = np.zeros(len(groups_arr), dtype=bool)
    combined = np.zeros(len(groups_arr), dtype=bool)
    per_writer = {}
    for writer in sorted(set(groups_arr.tolist())):
        held = groups_arr == writer
        thresholds = fit_policy(policy, scored.subset(~held), target)
        held_scored = scored.subset(held)
        auto[held] = held_scored.single_answers(thresholds)
        combined[held] = held_scored.family_answers(thresholds)
        per_writer[str(writer)] = Outcome.of(held_scored, auto[held], combined[held])
    return PolicyResult(policy, target, Outcome.of(scored, auto, combined), per_writer)


def compare_policies(
    scored: Scored,
    groups: Sequence[str],
    targets: Sequence[float] = (0.98, 0.99),
    progress: Callable[[str], None] = lambda _m: None,
) -> list[PolicyResult]:
    """Every policy at every fitting target, by nested leave-one-writer-out evaluation."""
    results = []
    for target in targets:
        for policy in POLICIES:
            progress(f"nested evaluation: {policy} at target {target}")
            results.append(nested_evaluation(scored, groups, policy, target))
    return results


def best_policy(results: Sequence[PolicyResult], floor: float = 0.98) -> PolicyResult:
    """The result with the best worst writer's precision among those of mean precision >= floor.

    Ties (to three decimals) go to the higher coverage.
    """
    eligible = [r for r in results if r.mean_precision >= floor] or list(results)
    return max(eligible, key=lambda r: (round(r.worst_precision, 3), r.pooled.coverage))


def comparison_table(results: Sequence[PolicyResult], chosen: PolicyResult | None = None) -> str:
    """A Markdown table of the comparison, the kept policy in bold."""
    lines = [
        "| policy | fitted to | precision | mean writer precision | worst writer | coverage "
        "| wrong | `other` auto-replied | staff-only auto-replied |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r.as_dict()
        name = f"**{r.policy}** (kept)" if r is chosen else r.policy
        worst = min(
            (o for o in r.per_writer.values() if o.replies >= MIN_WRITER_REPLIES),
            key=lambda o: o.precision,
            default=None,
        )
        worst_name = next((w for w, o in r.per_writer.items() if o is worst), "-")
        lines.append(
            f"| {name} | {r.target:.2f} | {d['precision']:.3f} "
            f"| {d['mean_writer_precision']:.3f} "
            f"| {d['worst_writer_precision']:.3f} ({worst_name}) "
            f"| {d['coverage']:.3f} | {d['wrong']} | {d['other_auto_replied']:.1%} "
            f"| {d['staff_only_auto_replied']:.1%} |"
        )
    return "\n".join(lines)
