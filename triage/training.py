"""Training a classifier: grouped cross-validation, threshold choice, final fit, evaluation and the gate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_predict

from triage.dataset import Example, sha256_of
from triage.decision import choose_thresholds, decide_rows
from triage.evaluation import QualityTargets, evaluate, gate_failures
from triage.model import SEED, TrainedModel, build_pipeline
from triage.models import utcnow


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
    if all(groups) and n_groups >= 3:
        splitter: Any = GroupKFold(n_splits=n_groups if n_groups <= 10 else 5)
    else:
        splitter, groups = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed), None
    probs = cross_val_predict(
        build_pipeline(seed), pairs, labels, groups=groups, cv=splitter, method="predict_proba", n_jobs=n_jobs
    )
    return probs, sorted(set(labels.tolist()))


def train(
    train_set: Sequence[Example],
    test_set: Sequence[Example] | None,
    version: str,
    targets: QualityTargets | None = None,
    seed: int = SEED,
    n_jobs: int = 1,
) -> TrainingResult:
    """Fit a model on `train_set` only; thresholds from out-of-fold predictions; `test_set` is only scored."""
    targets = targets or QualityTargets()
    labels = [ex.label for ex in train_set]
    probs, classes = out_of_fold_probabilities(train_set, seed, n_jobs)
    thresholds = choose_thresholds(labels, probs, classes, auto_reply_target=targets.auto_reply_precision)
    cv_report = evaluate(labels, decide_rows(probs, classes, thresholds))
    pipeline = build_pipeline(seed).fit([ex.pair for ex in train_set], labels)
    model = TrainedModel(pipeline, thresholds)
    test_report = None
    reasons = gate_failures(cv_report, targets, "cross-validation")
    if test_set:
        test_report = evaluate([ex.label for ex in test_set], model.decide([ex.pair for ex in test_set]))
        reasons += gate_failures(test_report, targets, "held-out test")
    model.metadata = {
        "version": version,
        "created": utcnow().isoformat(),
        "seed": seed,
        "training_data_sha256": sha256_of(train_set),
        "test_data_sha256": sha256_of(test_set) if test_set else None,
        "n_train": len(train_set),
        "class_counts": dict(sorted(Counter(labels).items())),
        "metrics": {"cross_validation": cv_report, "test": test_report},
        "gate": {"passed": not reasons, "reasons": reasons, "targets": targets.__dict__},
    }
    return TrainingResult(model, cv_report, test_report, reasons)
