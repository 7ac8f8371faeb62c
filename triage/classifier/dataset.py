"""Labelled emails: loading the JSONL files, hashing them, and finding near-duplicate pairs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

from triage.catalogue import BY_SLUG

TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"
# scored only, never trained on or tuned with: hard mail from a writer who saw no training data
HARD_FILE = "hard.jsonl"
FRESH_FILE = "fresh.jsonl"  # a check set by writers the model never read (never trained on)


class DatasetError(ValueError):
    """A data file that cannot be used, with the file and line named."""


@dataclass(frozen=True)
class Example:
    """One labelled email; `group` keeps paraphrases of one original (one writer) on one side of a
    split."""

    subject: str
    body: str
    label: str
    group: str = ""
    id: str = ""
    weight: float = 1.0  # below 1 for a weaker confirmation (a centre's "Yes" rather than staff's)

    @property
    def pair(self) -> tuple[str, str]:
        """The (subject, body) pair the model takes."""
        return (self.subject, self.body)


def load_jsonl(path: Path) -> list[Example]:
    """Read labelled emails from a JSON Lines file, checking every line."""
    examples: list[Example] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected an object")
        label = row.get("label")
        if label not in BY_SLUG:
            raise DatasetError(f"{path}:{number}: unknown label {label!r}")
        subject, body = row.get("subject", ""), row.get("body", "")
        if (
            not isinstance(subject, str)
            or not isinstance(body, str)
            or not (subject.strip() or body.strip())
        ):
            raise DatasetError(f"{path}:{number}: subject and body must be text, not both empty")
        examples.append(
            Example(
                subject,
                body,
                label,
                str(row.get("group", "")),
                str(row.get("id", f"{path.stem}:{number}")),
            )
        )
    return examples


def fit_weights(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """The Pipeline fit parameters that pass the examples' weights to its final step (none when
    every weight is 1, so unweighted training is unchanged)."""
    weights = np.fromiter((ex.weight for ex in examples), float, len(examples))
    return {"classify__sample_weight": weights} if (weights != 1.0).any() else {}


def sha256_of(examples: Iterable[Example]) -> str:
    """A content hash of a data set, independent of file layout."""
    digest = hashlib.sha256()
    for ex in examples:
        fields = [ex.subject, ex.body, ex.label, ex.group]
        # a weight other than 1 is part of the data; unweighted sets keep their old hashes
        digest.update(
            json.dumps(
                [*fields, ex.weight] if ex.weight != 1.0 else fields, ensure_ascii=False
            ).encode()
        )
        digest.update(b"\n")
    return digest.hexdigest()


def _shingles(texts: Sequence[str]) -> sparse.csr_matrix:
    vec = HashingVectorizer(
        analyzer="char",
        ngram_range=(5, 5),
        n_features=2**20,
        binary=True,
        norm=None,
        alternate_sign=False,
        lowercase=True,
    )
    shingles: sparse.csr_matrix = vec.transform([" ".join(t.split()) for t in texts]).tocsr()
    return shingles


def near_duplicates(
    left: Sequence[str], right: Sequence[str] | None = None, threshold: float = 0.8
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, jaccard) of texts sharing at least `threshold` of their character 5-grams.

    With `right` omitted, pairs within `left` (i < j); otherwise pairs across the two lists.
    """
    a = _shingles(left)
    b = a if right is None else _shingles(right)
    inter = (a @ b.T).tocoo()
    size_a = np.asarray(a.sum(axis=1)).ravel()
    size_b = np.asarray(b.sum(axis=1)).ravel()
    pairs = []
    for i, j, shared in zip(inter.row, inter.col, inter.data, strict=True):
        if right is None and i >= j:
            continue
        union = size_a[i] + size_b[j] - shared
        if union and shared / union >= threshold:
            pairs.append((int(i), int(j), float(shared / union)))
    return pairs
