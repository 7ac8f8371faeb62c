"""Training a classifier: grouped cross-validation, threshold choice, final fit, evaluation and the
gate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from triage.classifier.acknowledgement import ACKNOWLEDGEMENT_REASON, acknowledgement_only
from triage.classifier.cleaning import clean_body, is_forward
from triage.classifier.dataset import Example, fit_weights, sha256_of
from triage.classifier.decision import Decision, Thresholds, decide_rows, hold_for_staff
from triage.classifier.evaluation import QualityTargets, evaluate, gate_failures
from triage.classifier.model import SEED, TrainedModel, build_pipeline
from triage.classifier.near_copies import distinct
from triage.classifier.policies import Scored, fit_policy
from triage.orm import utcnow

# The threshold policy training keeps, chosen by nested leave-one-writer-out evaluation
# (`flask triage evaluate --policies`; the comparison is in training_data/README.md).
POLICY = "margin"
POLICY_TARGET = 0.99


@dataclass
class TrainingResult:
    """A trained model with its cross-validation and test reports and the gate's verdict."""

    model: TrainedModel
    cv_report: dict[str, Any]
    test_report: dict[str, Any] | None
    gate_reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the model meets every quality target."""
        return not self.gate_reasons


def out_of_fold_probabilities(
    examples: Sequence[Example], seed: int = SEED, n_jobs: int = 1
) -> tuple[np.ndarray, list[str]]:
    """Predict each example with a model that never saw its group (or, without groups, its fold)."""
    pairs = [ex.pair for ex in examples]
    labels = np.asarray([ex.label for ex in examples])
    groups = [ex.group for ex in examples]
    n_groups = len(set(groups))
    fold_groups: list[str] | None = groups
    if all(groups) and n_groups >= 3:
        splitter: Any = GroupKFold(n_splits=n_groups if n_groups <= 10 else 5)
    else:
        splitter, fold_groups = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed), None
    probs = cross_val_predict(
        build_pipeline(seed),
        pairs,
        labels,
        groups=fold_groups,
        cv=splitter,
        method="predict_proba",
        n_jobs=n_jobs,
        params=fit_weights(examples),
    )
    return probs, sorted(set(labels.tolist()))


def acknowledgements(examples: Sequence[Example]) -> np.ndarray:
    """Which examples' bodies only thank or confirm (these are never auto-replied)."""
    return np.fromiter(
        (
            acknowledgement_only(clean_body(ex.body, forwarded=is_forward(ex.subject)), ex.body)
            for ex in examples
        ),
        bool,
        len(examples),
    )


def decisions_for(
    probs: np.ndarray, classes: Sequence[str], thresholds: Thresholds, held: np.ndarray
) -> list[Decision]:
    """Decisions from out-of-fold probabilities, thank-you mail held for staff as
    TrainedModel.decide does."""
    decisions = decide_rows(probs, classes, thresholds)
    for i in np.flatnonzero(held):
        decisions[i] = hold_for_staff(decisions[i], probs[i], classes, ACKNOWLEDGEMENT_REASON)
    return decisions


# The thresholds are fitted on the out-of-fold predictions of distinct emails (near-copies of an
# earlier one left out: near_copies.py), and above this many of them on a random sample of this
# size (grouped cross-validation, as below it); the model kept is still the same Pipeline fitted on
# every example. Cross-validating the whole set would cost five more fits of it: at 50,000
# examples, over 10 minutes on 2 cores. The size curve is in training_data/README.md.
THRESHOLD_SAMPLE = 8_000


def threshold_sample(examples: Sequence[Example], size: int, seed: int) -> list[Example]:
    """`size` examples drawn at random (all of them when there are no more), in their order."""
    if len(examples) <= size:
        return list(examples)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(examples), size=size, replace=False))
    return [examples[int(i)] for i in keep]


def ordered_by_group(examples: Sequence[Example]) -> list[Example]:
    """The examples with each writer's (or centre's) together, groups in order of first appearance.

    The calibration's folds are unshuffled, so they then fall (almost) along groups: copies and
    near-copies by one writer do not sit on both sides of a calibration fold, which would make the
    probabilities overconfident. A file already grouped by writer keeps its order.
    """
    first: dict[str, int] = {}
    for i, ex in enumerate(examples):
        first.setdefault(ex.group or ex.id, i)
    return sorted(examples, key=lambda ex: first[ex.group or ex.id])


def fit_final(examples: Sequence[Example], seed: int, n_jobs: int) -> Pipeline:
    """The Pipeline fitted on every example, its calibration's folds fitted `n_jobs` at a time."""
    pipeline = build_pipeline(seed).set_params(classify__n_jobs=n_jobs)
    pipeline.fit(
        [ex.pair for ex in examples], [ex.label for ex in examples], **fit_weights(examples)
    )
    return pipeline.set_params(classify__n_jobs=None)


def train(
    train_set: Sequence[Example],
    test_set: Sequence[Example] | None,
    version: str,
    targets: QualityTargets | None = None,
    seed: int = SEED,
    n_jobs: int = 1,
) -> TrainingResult:
    """Fit a model on `train_set` only; thresholds from out-of-fold predictions; `test_set` is only
    scored."""
    targets = targets or QualityTargets()
    given, train_set = train_set, ordered_by_group(train_set)
    labels = [ex.label for ex in train_set]
    unique = ordered_by_group(distinct(given))
    sample = threshold_sample(unique, THRESHOLD_SAMPLE, seed)
    sample_labels = [ex.label for ex in sample]
    probs, classes = out_of_fold_probabilities(sample, seed, n_jobs)
    held = acknowledgements(sample)
    target = max(POLICY_TARGET, targets.auto_reply_precision)
    thresholds = fit_policy(POLICY, Scored.build(sample_labels, probs, classes, held), target)
    cv_report = evaluate(
        sample_labels,
        decisions_for(probs, classes, thresholds, held),
        [ex.group for ex in sample],
    )
    model = TrainedModel(fit_final(train_set, seed, n_jobs), thresholds)
    validation = "grouped cross-validation (out-of-fold)"
    if len(sample) < len(unique):
        validation += f" on a random sample of {len(sample)} of the {len(unique)} distinct emails"
    elif len(unique) < len(train_set):
        validation += f" on the {len(unique)} distinct emails"
    if len(unique) < len(train_set):
        validation += f" ({len(train_set) - len(unique)} near-copies left out)"
    test_report = None
    reasons = gate_failures(cv_report, targets, "cross-validation")
    if test_set:
        test_report = evaluate(
            [ex.label for ex in test_set], model.decide([ex.pair for ex in test_set])
        )
        reasons += gate_failures(test_report, targets, "held-out test")
    model.metadata = {
        "version": version,
        "created": utcnow().isoformat(),
        "seed": seed,
        "training_data_sha256": sha256_of(given),
        "test_data_sha256": sha256_of(test_set) if test_set else None,
        "n_train": len(train_set),
        "class_counts": dict(sorted(Counter(labels).items())),
        "validation": validation,
        "metrics": {"cross_validation": cv_report, "test": test_report},
        "gate": {"passed": not reasons, "reasons": reasons, "targets": targets.__dict__},
    }
    return TrainingResult(model, cv_report, test_report, reasons)
