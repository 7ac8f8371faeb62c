"""Training a classifier: grouped cross-validation, threshold choice, final fit, evaluation and the
gate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn import config_context
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    StratifiedKFold,
    cross_val_predict,
)
from sklearn.pipeline import Pipeline

from triage.classifier.acknowledgement import ACKNOWLEDGEMENT_REASON, acknowledgement_only
from triage.classifier.cleaning import clean_body, is_forward
from triage.classifier.dataset import Example, fit_weights, sha256_of
from triage.classifier.decision import Decision, Thresholds, decide_rows, hold_for_staff
from triage.classifier.evaluation import QualityTargets, evaluate, gate_failures
from triage.classifier.model import SEED, TrainedModel, build_pipeline, build_scalable_pipeline
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


SCALABLE_FROM = 20_000  # examples; from here on, training takes the scalable path


def _featurise(pipeline: Pipeline, pairs: list[tuple[str, str]], n_jobs: int) -> sparse.csr_matrix:
    """Clean and hash texts with the pipeline's stateless first steps, in parallel chunks, keeping
    order."""
    head = pipeline[:2]
    size = max(1, -(-len(pairs) // max(1, n_jobs)))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    parts = Parallel(n_jobs=n_jobs)(delayed(head.transform)(chunk) for chunk in chunks)
    features: sparse.csr_matrix = sparse.vstack(parts).tocsr()
    return features


def _train_scalable(
    train_set: Sequence[Example], version: str, targets: QualityTargets, seed: int, n_jobs: int
) -> tuple[TrainedModel, dict[str, Any], str]:
    """Large data: one grouped 80/20 split; the model fitted on the 80 % is the one kept, with
    thresholds chosen on the 20 % it never saw (no refit, so the thresholds belong to exactly this
    model)."""
    pipeline = build_scalable_pipeline(seed, n_jobs)
    pairs = [ex.pair for ex in train_set]
    labels = np.asarray([ex.label for ex in train_set])
    groups = np.asarray([ex.group or ex.id for ex in train_set])
    pipeline[:2].fit(pairs[:1])  # stateless steps: fitting only marks them ready
    features = _featurise(pipeline, pairs, n_jobs)
    fit_idx, hold_idx = next(
        GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed).split(pairs, labels, groups)
    )
    tail = pipeline[2:]
    tail.fit(features[fit_idx], labels[fit_idx], **fit_weights([train_set[i] for i in fit_idx]))
    with config_context(assume_finite=True):
        probs = tail.predict_proba(features[hold_idx])
    classes = [str(c) for c in tail.classes_]
    held = labels[hold_idx].tolist()
    ack = acknowledgements([train_set[i] for i in hold_idx])
    target = max(POLICY_TARGET, targets.auto_reply_precision)
    thresholds = fit_policy(POLICY, Scored.build(held, probs, classes, ack), target)
    report = evaluate(held, decisions_for(probs, classes, thresholds, ack))
    return (
        TrainedModel(pipeline, thresholds),
        report,
        f"grouped 80/20 holdout ({len(hold_idx)} emails)",
    )


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
    labels = [ex.label for ex in train_set]
    if len(train_set) >= SCALABLE_FROM:
        model, cv_report, validation = _train_scalable(train_set, version, targets, seed, n_jobs)
    else:
        probs, classes = out_of_fold_probabilities(train_set, seed, n_jobs)
        held = acknowledgements(train_set)
        target = max(POLICY_TARGET, targets.auto_reply_precision)
        thresholds = fit_policy(POLICY, Scored.build(labels, probs, classes, held), target)
        cv_report = evaluate(
            labels, decisions_for(probs, classes, thresholds, held), [ex.group for ex in train_set]
        )
        pipeline = build_pipeline(seed).fit(
            [ex.pair for ex in train_set], labels, **fit_weights(train_set)
        )
        model, validation = (
            TrainedModel(pipeline, thresholds),
            "grouped cross-validation (out-of-fold)",
        )
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
        "training_data_sha256": sha256_of(train_set),
        "test_data_sha256": sha256_of(test_set) if test_set else None,
        "n_train": len(train_set),
        "class_counts": dict(sorted(Counter(labels).items())),
        "validation": validation,
        "metrics": {"cross_validation": cv_report, "test": test_report},
        "gate": {"passed": not reasons, "reasons": reasons, "targets": targets.__dict__},
    }
    return TrainingResult(model, cv_report, test_report, reasons)
