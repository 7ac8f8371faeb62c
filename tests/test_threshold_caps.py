"""The caps on auto-replies to `other` and staff-only mail are one pair of values, used everywhere
thresholds are chosen: decision.choose_thresholds' defaults and every policy's check."""

from __future__ import annotations

import numpy as np
import pytest

from triage.classifier.decision import (
    MAX_OTHER_SHARE,
    MAX_STAFF_ONLY_SHARE,
    NEVER,
    choose_thresholds,
)
from triage.classifier.policies import Outcome

CLASSES = ["candidate_absent", "errors_within_exam", "other"]


def test_the_caps_in_force() -> None:
    assert (MAX_OTHER_SHARE, MAX_STAFF_ONLY_SHARE) == (0.008, 0.005)


@pytest.mark.parametrize(("confident_other", "answered"), [(1, True), (2, False)])
def test_choose_thresholds_caps_other_at_the_shared_value(
    confident_other: int, answered: bool
) -> None:
    # 100 right answers at 0.95 and `confident_other` of 200 `other` emails looking the same:
    # 1 in 200 (0.5 %) is within the 0.8 % cap, 2 in 200 (1 %) is not
    looks_right = [[0.95, 0.03, 0.02]] * (100 + confident_other)
    probs = np.array(looks_right + [[0.1, 0.1, 0.8]] * (200 - confident_other))
    truth = ["candidate_absent"] * 100 + ["other"] * 200
    limit = choose_thresholds(truth, probs, CLASSES).for_category("candidate_absent")
    assert (limit != NEVER) is answered


@pytest.mark.parametrize(
    ("other_replied", "staff_replied", "within"),
    [(1, 0, True), (2, 0, False), (0, 1, True), (0, 2, False)],
)
def test_policies_check_the_same_caps(other_replied: int, staff_replied: int, within: bool) -> None:
    outcome = Outcome(
        replies=100 + other_replied + staff_replied,
        correct=100,
        self_serve=100,
        other_replied=other_replied,
        n_other=200,
        staff_replied=staff_replied,
        n_staff=200,
    )
    assert outcome.within(0.9) is within
