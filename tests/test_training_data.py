"""The training data: format, counts, a clean split, and no near-duplicates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from triage.catalogue import SLUGS
from triage.classifier.dataset import (
    FRESH_FILE,
    HARD_FILE,
    TEST_FILE,
    TRAIN_FILE,
    DatasetError,
    load_jsonl,
    near_duplicates,
)

DATA = Path(__file__).resolve().parent.parent / "training_data"
TRAIN = load_jsonl(DATA / TRAIN_FILE)
TEST = load_jsonl(DATA / TEST_FILE)
HARD = load_jsonl(DATA / HARD_FILE)
FRESH = load_jsonl(DATA / FRESH_FILE)


def _text(ex) -> str:  # type: ignore[no-untyped-def]
    return f"{ex.subject}\n{ex.body}"


def test_counts_per_category() -> None:
    counts = Counter(ex.label for ex in TRAIN)
    assert set(counts) == set(SLUGS)
    assert min(n for slug, n in counts.items() if slug != "other") >= 80
    assert counts["other"] >= 300
    assert set(Counter(ex.label for ex in TEST)) == set(SLUGS)


def test_writers_stay_on_one_side_of_the_split() -> None:
    assert all(ex.group for ex in TRAIN + TEST)
    assert not {ex.group for ex in TRAIN} & {ex.group for ex in TEST}
    assert len({ex.id for ex in TRAIN + TEST}) == len(TRAIN) + len(TEST)


def test_no_near_duplicates_across_the_split() -> None:
    pairs = near_duplicates([_text(e) for e in TEST], [_text(e) for e in TRAIN])
    assert pairs == [], [(TEST[i].id, TRAIN[j].id, round(s, 2)) for i, j, s in pairs]


def test_hard_set_is_held_out_from_training_and_test() -> None:
    assert set(Counter(ex.label for ex in HARD)) == set(SLUGS)
    assert not {ex.group for ex in HARD} & {ex.group for ex in TRAIN + TEST}
    pairs = near_duplicates([_text(e) for e in HARD], [_text(e) for e in TRAIN + TEST])
    assert pairs == [], [(HARD[i].id, (TRAIN + TEST)[j].id, round(s, 2)) for i, j, s in pairs]


def test_fresh_check_set_is_held_out_from_every_other_file() -> None:
    assert set(Counter(ex.label for ex in FRESH)) == set(SLUGS)
    others = TRAIN + TEST + HARD
    assert not {ex.group for ex in FRESH} & {ex.group for ex in others}
    pairs = near_duplicates([_text(e) for e in FRESH], [_text(e) for e in others])
    assert pairs == [], [(FRESH[i].id, others[j].id, round(s, 2)) for i, j, s in pairs]


def test_no_near_duplicates_within_training() -> None:
    pairs = near_duplicates([_text(e) for e in TRAIN])
    assert pairs == [], [(TRAIN[i].id, TRAIN[j].id, round(s, 2)) for i, j, s in pairs]


def test_near_duplicate_check_can_fail() -> None:
    original = TRAIN[0].body
    paraphrase = original.replace("the", "teh", 1) + " thanks"
    assert near_duplicates([original, paraphrase, "something else entirely about results"]) != []
    assert near_duplicates(["exam frozen on pc 3"], ["when are results out"]) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"subject": "a", "body": "b", "label": "nope"}', "unknown label"),
        ("not json", "not JSON"),
        ('{"subject": "", "body": "", "label": "other"}', "not both empty"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_bad_data_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"subject": "ok", "body": "fine", "label": "other"}\n' + content + "\n")
    with pytest.raises(DatasetError, match=rf"bad.jsonl:2: .*{message}"):
        load_jsonl(path)
