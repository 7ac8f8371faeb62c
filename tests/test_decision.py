"""Threshold selection from out-of-fold predictions, and the action rules."""

from __future__ import annotations

import numpy as np

from triage.classifier.decision import (
    AUTO_REPLY,
    NEVER,
    ROUTE,
    TRIAGE,
    Decision,
    Thresholds,
    action_for,
    choose_thresholds,
    decide_rows,
)


def _probs(rows: list[tuple[int, float, float]], n_classes: int) -> np.ndarray:
    """Rows of (top class index, top prob, runner-up prob) spread over the other classes."""
    out = np.zeros((len(rows), n_classes))
    for i, (cls, top, second) in enumerate(rows):
        out[i, :] = (1 - top - second) / (n_classes - 2)
        out[i, cls] = top
        out[i, (cls + 1) % n_classes] = second
    return out


CLASSES = ["candidate_absent", "errors_within_exam", "other"]


def test_threshold_excludes_the_confident_mistakes_region() -> None:
    # 40 right answers at 0.9, 10 right at 0.6, 5 wrong at 0.6: only >= 0.9 keeps precision >= 0.98
    rows = [(0, 0.9, 0.05)] * 40 + [(0, 0.6, 0.3)] * 15
    truth = ["candidate_absent"] * 50 + ["other"] * 5
    t = choose_thresholds(truth, _probs(rows, 3), CLASSES)
    decisions = decide_rows(_probs(rows, 3), CLASSES, t)
    auto = [d for d, y in zip(decisions, truth, strict=True) if d.action == AUTO_REPLY]
    assert len(auto) == 40 and all(d.category == "candidate_absent" for d in auto)


def test_lowest_threshold_when_everything_is_right() -> None:
    rows = [(0, 0.5, 0.4)] * 30
    t = choose_thresholds(["candidate_absent"] * 30, _probs(rows, 3), CLASSES)
    assert t.for_category("candidate_absent") == {"prob": 0.3, "margin": 0.0}


def test_category_that_cannot_reach_precision_never_acts_alone() -> None:
    rows = [(0, 0.95, 0.01)] * 20
    truth = ["candidate_absent"] * 10 + ["other"] * 10
    t = choose_thresholds(truth, _probs(rows, 3), CLASSES)
    assert t.for_category("candidate_absent") == NEVER
    assert action_for("candidate_absent", 0.999, 0.99, t) == TRIAGE


def test_margin_separates_when_probability_does_not() -> None:
    # right answers have a clear runner-up gap; wrong ones are close calls with the same top probability
    probs = np.array([[0.6, 0.2, 0.2]] * 30 + [[0.6, 0.38, 0.02]] * 10)
    truth = ["candidate_absent"] * 30 + ["other"] * 10
    t = choose_thresholds(truth, probs, CLASSES)
    limit = t.for_category("candidate_absent")
    assert limit["prob"] <= 0.6
    assert 0.22 < limit["margin"] <= 0.4
    assert sum(d.action == AUTO_REPLY for d in decide_rows(probs, CLASSES, t)) == 30


def test_actions_by_category_kind() -> None:
    t = Thresholds(
        {
            "candidate_absent": {"prob": 0.5, "margin": 0.1},
            "errors_within_exam": {"prob": 0.5, "margin": 0.1},
        }
    )
    assert action_for("candidate_absent", 0.8, 0.5, t) == AUTO_REPLY
    assert action_for("errors_within_exam", 0.8, 0.5, t) == ROUTE
    assert action_for("candidate_absent", 0.8, 0.05, t) == TRIAGE
    assert action_for("other", 0.99, 0.99, t) == TRIAGE
    assert action_for("unknown_slug", 0.99, 0.99, t) == TRIAGE


def test_decisions_carry_queue_and_alternatives() -> None:
    t = Thresholds({"errors_within_exam": {"prob": 0.5, "margin": 0.0}})
    probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])
    first, second = decide_rows(
        probs, CLASSES, t, routing={"errors_within_exam": "assessment-content"}
    )
    assert (first.action, first.queue) == (ROUTE, "assessment-content")
    assert first.alternatives[0][0] in {"candidate_absent", "other"}
    assert (second.category, second.action, second.queue) == ("other", TRIAGE, "triage")
    assert Thresholds.from_dict(t.to_dict()) == t


def test_confident_mistakes_on_other_mail_are_capped() -> None:
    # 100 right at 0.95, and 3 'other' emails the model is sure about at 0.9: a threshold above them wins
    probs = np.array([[0.95, 0.03, 0.02]] * 100 + [[0.9, 0.05, 0.05]] * 3 + [[0.1, 0.1, 0.8]] * 200)
    truth = ["candidate_absent"] * 100 + ["other"] * 3 + ["other"] * 200
    t = choose_thresholds(truth, probs, CLASSES)
    assert t.for_category("candidate_absent")["prob"] > 0.9
    decisions = decide_rows(probs, CLASSES, t)
    assert sum(d.action == AUTO_REPLY for d in decisions) == 100


def test_routing_threshold_for_staff_only_categories() -> None:
    probs = np.array([[0.05, 0.9, 0.05]] * 20 + [[0.2, 0.5, 0.3]] * 10)
    truth = ["errors_within_exam"] * 20 + ["other"] * 10
    t = choose_thresholds(truth, probs, CLASSES)
    assert 0.5 < t.for_category("errors_within_exam")["prob"] <= 0.9


def test_family_margin_holds_close_calls_between_siblings() -> None:
    classes = ["cannot_unlock_exam", "exam_locked_after_keycode", "extra_time", "other"]
    t = Thresholds({slug: {"prob": 0.5, "margin": 0.0} for slug in classes[:3]}, family_margin=0.3)
    probs = np.array(
        [
            [0.6, 0.35, 0.03, 0.02],  # sibling close behind: held
            [0.6, 0.05, 0.33, 0.02],  # runner-up is no sibling: answered
            [0.9, 0.05, 0.03, 0.02],  # clear of the sibling: answered
            [0.05, 0.6, 0.33, 0.02],  # the other sibling on top, the first far behind: answered
        ]
    )
    actions = [d.action for d in decide_rows(probs, classes, t)]
    assert actions == [TRIAGE, AUTO_REPLY, AUTO_REPLY, AUTO_REPLY]
    assert action_for("cannot_unlock_exam", 0.9, 0.5, t, family_gap=0.1) == TRIAGE
    assert action_for("extra_time", 0.9, 0.5, t) == AUTO_REPLY


def test_thresholds_written_before_policies_still_load() -> None:
    old = {
        "auto_reply_target": 0.98,
        "route_target": 0.9,
        "per_category": {"extra_time": {"prob": 0.7, "margin": 0.1}},
    }
    t = Thresholds.from_dict(old)
    assert (t.family_margin, t.policy) == (0.0, "per_category")
    new = Thresholds(
        {"extra_time": {"prob": 0.7, "margin": 0.0}}, family_margin=0.2, policy="global"
    )
    assert Thresholds.from_dict(new.to_dict()) == new


def test_held_for_staff_is_other_in_triage_with_the_reason() -> None:
    from triage.classifier.decision import hold_for_staff

    probs = np.array([[0.7, 0.2, 0.1]])
    (decision,) = decide_rows(
        probs, CLASSES, Thresholds({"candidate_absent": {"prob": 0.5, "margin": 0.0}})
    )
    assert decision.action == AUTO_REPLY
    held = hold_for_staff(decision, probs[0], CLASSES, "thanks only")
    assert (held.category, held.action, held.queue, held.reason) == (
        "other",
        TRIAGE,
        "triage",
        "thanks only",
    )
    assert held.confidence == 0.1 and [s for s, _p in held.alternatives] == [
        "candidate_absent",
        "errors_within_exam",
    ]


FAMILY_CLASSES = [
    "cannot_unlock_exam",
    "exam_locked_after_keycode",
    "unlock_with_pin",
    "candidate_absent",
    "reschedule_missed_exam",
    "qualification_not_showing",
    "candidate_not_on_schedule_list",
    "other",
]


def _family_thresholds() -> Thresholds:
    per_category = {slug: {"prob": 0.9, "margin": 0.0} for slug in FAMILY_CLASSES}
    return Thresholds(per_category, family_answer=0.85)


def _row(**probs: float) -> np.ndarray:
    row = np.zeros((1, len(FAMILY_CLASSES)))
    for slug, p in probs.items():
        row[0, FAMILY_CLASSES.index(slug)] = p
    row[0, FAMILY_CLASSES.index("other")] += 1 - row.sum()
    return row


def _decide(*rows: np.ndarray) -> list[Decision]:
    return decide_rows(np.vstack(rows), FAMILY_CLASSES, _family_thresholds())


def test_a_sure_family_of_self_serve_members_gets_the_combined_answer() -> None:
    """Unsure which of FAQ 2/3/4, sure it is one of them: one answer covering all three, in order."""
    (d,) = _decide(_row(cannot_unlock_exam=0.5, exam_locked_after_keycode=0.3, unlock_with_pin=0.1))
    assert (d.category, d.action) == ("cannot_unlock_exam", AUTO_REPLY)
    assert d.answer_covers == (
        "cannot_unlock_exam",
        "exam_locked_after_keycode",
        "unlock_with_pin",
    )
    assert d.as_json()["answer_covers"] == list(d.answer_covers)
    assert "unlocking an exam (FAQ 2, 3, 4)" in d.explanation()
    assert "90%" in d.explanation() and "combined answer" in d.explanation()


def test_a_sure_member_gets_its_own_answer_and_an_unsure_family_goes_to_triage() -> None:
    sure, unsure = _decide(
        _row(exam_locked_after_keycode=0.95, cannot_unlock_exam=0.03),
        _row(cannot_unlock_exam=0.45, exam_locked_after_keycode=0.3),
    )
    assert sure.answer_covers == ("exam_locked_after_keycode",) and sure.family is None
    assert sure.explanation() == ""
    assert (unsure.action, unsure.answer_covers, unsure.family) == (TRIAGE, (), None)


def test_a_sure_mixed_family_goes_to_its_staff_members_queue_unanswered() -> None:
    """16/17 and 6/7/8 mix self-serve and staff-only members: no answer, the staff queue."""
    absent, missing = _decide(
        _row(candidate_absent=0.6, reschedule_missed_exam=0.35),
        _row(candidate_not_on_schedule_list=0.5, qualification_not_showing=0.4),
    )
    assert (absent.category, absent.action, absent.queue) == (
        "candidate_absent",
        ROUTE,
        "scheduling",
    )
    assert absent.answer_covers == () and "staff queue" in absent.explanation()
    assert (missing.action, missing.queue_category, missing.queue) == (
        ROUTE,
        "qualification_not_showing",
        "centre-admin",
    )


def test_thresholds_without_family_answers_never_give_one() -> None:
    t = Thresholds.from_dict({"per_category": {}, "auto_reply_target": 0.98, "route_target": 0.9})
    assert t.family_answer > 1
    assert Thresholds.from_dict(_family_thresholds().to_dict()).family_answer == 0.85
