"""Threshold policies: fitted on some writers, scored on another; the comparison and the rule that keeps one."""

from __future__ import annotations

import numpy as np

from triage.classifier import policies
from triage.classifier.policies import (
    Scored,
    best_policy,
    compare_policies,
    fit_policy,
    nested_evaluation,
)

CLASSES = ["candidate_absent", "extra_time", "errors_within_exam", "other"]


def _writer(
    rng: np.random.Generator, wrong_other_at: float | None
) -> tuple[list[str], list[list[float]]]:
    """40 right self-serve answers spread over 0.55-0.99, 30 `other`; optionally one `other` confidently wrong."""
    truth, rows = [], []
    for i in range(40):
        top = 0.55 + 0.44 * rng.random()
        cls = i % 2
        row = [0.0] * 4
        row[cls], row[3] = top, 1 - top
        truth.append(CLASSES[cls])
        rows.append(row)
    for _ in range(30):
        truth.append("other")
        rows.append([0.2, 0.1, 0.1, 0.6])
    if wrong_other_at is not None:
        truth.append("other")
        rows.append([wrong_other_at, 0.0, 0.0, 1 - wrong_other_at])
    return truth, rows


def _scored(wrong: dict[str, float | None]) -> tuple[Scored, list[str]]:
    rng = np.random.default_rng(7)
    truth, rows, groups = [], [], []
    for writer, at in wrong.items():
        t, r = _writer(rng, at)
        truth += t
        rows += r
        groups += [writer] * len(t)
    return Scored.build(truth, np.array(rows), CLASSES), groups


def test_every_policy_keeps_confident_mistakes_out_and_answers_the_rest() -> None:
    scored, _groups = _scored({"a": None, "b": None, "c": 0.7})
    for policy in policies.POLICIES:
        thresholds = fit_policy(policy, scored, 0.98)
        auto = scored.auto_replied(thresholds)
        assert not (auto & (scored.truth == "other")).any(), policy
        assert auto.sum() > 40, policy
        assert thresholds.policy == policy


def test_nested_evaluation_scores_each_writer_with_thresholds_fitted_without_it() -> None:
    # only writer c has a confidently wrong `other`; fitted without c, the threshold cannot know about it
    scored, groups = _scored({"a": None, "b": None, "c": 0.97})
    result = nested_evaluation(scored, groups, "global", 0.98)
    assert set(result.per_writer) == {"a", "b", "c"}
    assert result.per_writer["c"].replies - result.per_writer["c"].correct == 1
    assert result.per_writer["a"].precision == 1.0
    assert result.worst_precision < 1.0 and result.pooled.replies == sum(
        o.replies for o in result.per_writer.values()
    )
    fitted_on_all = fit_policy("global", scored, 0.98)
    assert not (scored.auto_replied(fitted_on_all) & (scored.truth == "other")).any()


def test_the_rule_keeps_the_best_worst_writer_then_coverage() -> None:
    scored, groups = _scored({"a": None, "b": 0.8, "c": None, "d": None})
    results = compare_policies(scored, groups, targets=(0.98,))
    assert [r.policy for r in results] == list(policies.POLICIES)
    best = best_policy(results)
    top = max(round(r.worst_precision, 3) for r in results if r.mean_precision >= 0.98)
    assert round(best.worst_precision, 3) == top
    assert best.pooled.coverage == max(
        r.pooled.coverage for r in results if round(r.worst_precision, 3) == top
    )
    table = policies.comparison_table(results, best)
    assert table.count("\n") == len(results) + 1 and "(kept)" in table
