"""Near-copies among labelled emails, found at any size (MinHash with banding, checked exactly).

A centre that sends one email twice, a template many centres fill in, a forward of an email
already in the set: as training data these are one question asked several times. The model may
learn from every copy, but the abstention thresholds must be chosen on distinct emails: a set in
which most rows are copies of a few (slightly varied, perhaps shortened) emails is harder or easier
than the mail the model will meet, and thresholds fitted on it answer too little or too much.

Two emails are near-copies when they have the same label and their sets of words overlap by at
least `threshold` (Jaccard). Candidates come from MinHash signatures split into bands (emails
sharing any band), each confirmed on the exact word sets, so the cost grows with the number of
emails, not its square.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from triage.classifier.dataset import Example

THRESHOLD = 0.7  # word-set Jaccard from which two emails of one label are copies
HASHES = 64  # MinHash signature length
ROWS = 4  # signature rows per band: HASHES / ROWS bands; Jaccard 0.7 is a candidate with p > 0.99
_WORD = re.compile(r"\w+")
_MASK = np.uint64(2**64 - 1)


def words(example: Example) -> frozenset[str]:
    """The distinct lower-case words of an email's subject and body."""
    return frozenset(_WORD.findall(f"{example.subject} {example.body}".lower()))


class _Signer:
    """MinHash signatures: multiply-shift hashes of each word's CRC-32, minimum per hash."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=HASHES, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=HASHES, dtype=np.uint64)
        self.ids: dict[str, int] = {}

    def sign(self, tokens: frozenset[str]) -> np.ndarray:
        """The signature of a word set (all ones for an empty set)."""
        if not tokens:
            return np.full(HASHES, _MASK, dtype=np.uint64)
        ids = self.ids
        x = np.fromiter(
            (ids.get(t) or ids.setdefault(t, zlib.crc32(t.encode()) + 1) for t in tokens),
            np.uint64,
            len(tokens),
        )
        with np.errstate(over="ignore"):
            hashed = self.a[:, None] * x[None, :] + self.b[:, None]
        signature: np.ndarray = hashed.min(axis=1)
        return signature


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def copy_of(examples: Sequence[Example], threshold: float = THRESHOLD, seed: int = 0) -> list[int]:
    """For each email, the index of the first email it is a near-copy of (itself when none)."""
    parent = list(range(len(examples)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    signer = _Signer(seed)
    word_sets = [words(ex) for ex in examples]
    first_in: dict[tuple[str, int, bytes], int] = {}
    for i, (ex, tokens) in enumerate(zip(examples, word_sets, strict=True)):
        signature = signer.sign(tokens)
        for band in range(HASHES // ROWS):
            key = (ex.label, band, signature[band * ROWS : (band + 1) * ROWS].tobytes())
            j = first_in.setdefault(key, i)
            if j == i:
                continue
            ri, rj = root(i), root(j)
            if ri != rj and _jaccard(tokens, word_sets[j]) >= threshold:
                parent[max(ri, rj)] = min(ri, rj)  # the earlier email stays the representative
    return [root(i) for i in range(len(examples))]


def distinct(examples: Sequence[Example], threshold: float = THRESHOLD) -> list[Example]:
    """The examples without near-copies of an earlier one, in their order."""
    return [
        ex
        for i, (ex, first) in enumerate(zip(examples, copy_of(examples, threshold), strict=True))
        if first == i
    ]
