"""Near-copies among labelled emails: found by MinHash banding and confirmed on the word sets."""

from __future__ import annotations

import random

from triage.classifier.dataset import Example
from triage.classifier.near_copies import copy_of, distinct, words

FROZEN = (
    "Hello, one of our learners was halfway through the level 3 exam this morning when the "
    "SecureClient screen froze and nothing responds to the mouse or the keyboard. The invigilator "
    "has not restarted the PC yet. What should we do? Kind regards, Sam, exams office"
)


def _ex(body: str, label: str = "exam_frozen", subject: str = "Exam problem") -> Example:
    return Example(subject, body, label, "w1", f"id{random.random()}")


def _dropped(body: str, share: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(w for w in body.split() if rng.random() >= share)


def test_copies_with_words_dropped_are_one_email_and_the_first_stays() -> None:
    emails = [_ex(FROZEN)] + [_ex(_dropped(FROZEN, 0.1, seed)) for seed in range(6)]
    assert copy_of(emails) == [0] * 7
    assert distinct(emails) == [emails[0]]


def test_the_same_words_under_another_label_are_not_a_copy() -> None:
    emails = [_ex(FROZEN), _ex(FROZEN, label="other"), _ex(FROZEN)]
    assert copy_of(emails) == [0, 1, 0]


def test_different_emails_on_one_topic_are_kept_apart() -> None:
    emails = [
        _ex(FROZEN),
        _ex("Our candidate's exam has frozen in SecureClient, can the invigilator restart it?"),
        _ex("The screen froze during the test. What now?"),
        _ex("exam frozen"),
        _ex("exam frozen again", subject=""),
        _ex("", subject=""),
        _ex("", subject=""),  # two empty emails are one
    ]
    assert copy_of(emails) == [0, 1, 2, 3, 4, 5, 5]


def test_a_chain_of_copies_keeps_its_earliest_email() -> None:
    a = FROZEN
    b = _dropped(a, 0.12, 1)
    c = _dropped(b, 0.12, 2)
    emails = [_ex("unrelated: where do we find the results for June?"), _ex(c), _ex(b), _ex(a)]
    assert copy_of(emails)[1:] == [1, 1, 1]


def test_the_word_sets_ignore_case_and_punctuation() -> None:
    assert words(_ex("Exam FROZEN!!", subject="Help")) == {"exam", "frozen", "help"}


def test_many_emails_are_handled_without_comparing_every_pair() -> None:
    rng = random.Random(3)
    vocabulary = [f"word{i}" for i in range(3000)]
    originals = [" ".join(rng.sample(vocabulary, 40)) for _ in range(2000)]
    emails = [_ex(t) for t in originals] + [
        _ex(_dropped(t, 0.1, i)) for i, t in enumerate(originals)
    ]
    firsts = copy_of(emails)
    assert firsts[:2000] == list(range(2000))  # random texts share few words: none merged
    found = sum(firsts[2000 + i] == i for i in range(2000))
    assert found >= 1990  # and (nearly) every copy points at its original
