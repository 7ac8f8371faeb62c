"""The scikit-learn Pipeline and the loaded classifier that turns emails into decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn import config_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from triage.classifier.cleaning import model_text
from triage.classifier.decision import Decision, Thresholds, decide_rows

SEED = 20261126


def clean_pairs(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Pipeline step: (subject, body) pairs to the cleaned text the vectorisers read."""
    return [model_text(subject, body) for subject, body in pairs]


def build_pipeline(seed: int = SEED) -> Pipeline:
    """Cleaning, word and character TF-IDF, and a sigmoid-calibrated linear SVM, as one Pipeline.

    The calibration is fitted on 5-fold cross-validated scores of the SVM (`ensemble=False`): one SVM
    at prediction time, which keeps single-email latency low.
    """
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode",
                                     token_pattern=r"(?u)\b\w+\b", min_df=1, dtype=np.float32)),  # noqa: S106
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                     strip_accents="unicode", min_df=2, max_features=150_000, dtype=np.float32)),
        ]
    )  # fmt: skip
    svm = LinearSVC(C=2.0, random_state=seed, max_iter=10000)
    return Pipeline(
        [
            ("clean", FunctionTransformer(clean_pairs)),
            ("features", features),
            ("classify", CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)),
        ]
    )


def build_scalable_pipeline(seed: int = SEED, n_jobs: int = 2) -> Pipeline:
    """The same steps for large data sets (retraining on tens of thousands of tickets).

    Hashing vectorisers have no vocabulary to learn, so the text work is done once and in parallel;
    a linear SVM trained by SGD, calibrated the same way, fits in seconds where liblinear takes minutes.
    """
    hashing = {
        "alternate_sign": False,
        "norm": None,
        "n_features": 2**20,
        "strip_accents": "unicode",
        "dtype": np.float32,
    }
    features = FeatureUnion(
        [
            ("word", HashingVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", **hashing)),  # noqa: S106
            ("char", HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **hashing)),
        ]
    )
    svm = SGDClassifier(loss="hinge", alpha=1e-5, max_iter=6, tol=None, random_state=seed, n_jobs=n_jobs)
    return Pipeline(
        [
            ("clean", FunctionTransformer(clean_pairs)),
            ("features", features),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            ("classify", CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)),
        ]
    )


@dataclass
class TrainedModel:
    """A fitted Pipeline with its abstention thresholds and metadata; the unit saved to disk."""

    pipeline: Pipeline
    thresholds: Thresholds
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """The model version name."""
        return str(self.metadata.get("version", "unsaved"))

    @property
    def classes(self) -> list[str]:
        """Class slugs in the column order of predict_proba."""
        return [str(c) for c in self.pipeline.classes_]

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Class probabilities for (subject, body) pairs: the Pipeline's predict_proba, computed directly.

        For the sigmoid-calibrated linear SVM this is the SVM's scores through each class's fitted sigmoid,
        normalised, exactly as scikit-learn computes it (a test checks they agree), without its per-class
        input validation, which costs more than the arithmetic for a single email.
        """
        return self._probabilities(self.pipeline[:-1], list(pairs))

    def text_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities for texts already in `model_text` form (cleaned once by the caller).

        The Pipeline's own cleaning step is skipped (a Pipeline without one reads the texts as they are).
        """
        first = 1 if self.pipeline.steps[0][0] == "clean" else 0
        return self._probabilities(self.pipeline[first:-1], list(texts))

    def _probabilities(self, transform: Any, inputs: list[Any]) -> np.ndarray:
        with config_context(assume_finite=True, skip_parameter_validation=True):
            features = transform.transform(inputs)
            fast = self._calibration()
            if fast is None:
                return self.pipeline[-1].predict_proba(features)
            coef, intercept, a, b, columns = fast
            scores = np.asarray(features @ coef.T) + intercept
            calibrated = np.zeros((scores.shape[0], len(self.pipeline.classes_)))
            calibrated[:, columns] = expit(-(a * scores + b))
            total = calibrated.sum(axis=1, keepdims=True)
            uniform = np.full_like(calibrated, 1 / calibrated.shape[1])
            proba = np.divide(calibrated, total, out=uniform, where=total != 0)
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            return proba

    def _calibration(self) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray] | None:
        """Coefficients of the single calibrated SVM and its sigmoids, or None for any other final step."""
        if not hasattr(self, "_fast"):
            self._fast = None
            final = self.pipeline[-1]
            calibrated = getattr(final, "calibrated_classifiers_", [])
            if isinstance(final, CalibratedClassifierCV) and final.method == "sigmoid" and len(calibrated) == 1:
                only = calibrated[0]
                svm = only.estimator
                if isinstance(svm, (LinearSVC, SGDClassifier)) and len(only.calibrators) == svm.coef_.shape[0] > 1:
                    columns = np.searchsorted(only.classes, svm.classes_)
                    a = np.array([c.a_ for c in only.calibrators])
                    b = np.array([c.b_ for c in only.calibrators])
                    self._fast = (svm.coef_, svm.intercept_, a, b, columns)
        return self._fast

    def decide(self, pairs: Sequence[tuple[str, str]], routing: Mapping[str, str] | None = None) -> list[Decision]:
        """Decisions for a batch of (subject, body) pairs."""
        if not pairs:
            return []
        return decide_rows(self.probabilities(pairs), self.classes, self.thresholds, routing)

    def decide_texts(self, texts: Sequence[str], routing: Mapping[str, str] | None = None) -> list[Decision]:
        """Decisions for a batch of texts already in `model_text` form."""
        if not texts:
            return []
        return decide_rows(self.text_probabilities(texts), self.classes, self.thresholds, routing)

    def decide_one(self, subject: str, body: str, routing: Mapping[str, str] | None = None) -> Decision:
        """The decision for one email."""
        return self.decide([(subject, body)], routing)[0]
