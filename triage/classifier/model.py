"""The scikit-learn Pipeline and the loaded classifier that turns emails into decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn import config_context
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from triage.classifier.acknowledgement import ACKNOWLEDGEMENT_REASON, acknowledgement_only
from triage.classifier.cleaning import (
    clean_body,
    clean_subject,
    cleaned_text,
    is_forward,
    model_text,
)
from triage.classifier.decision import Decision, Thresholds, decide_rows, hold_for_staff

SEED = 20261126
WORD_TOKENS = r"(?u)\b\w+\b"  # words of one character count too (a PIN, "2")


def clean_pairs(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Pipeline step: (subject, body) pairs to the cleaned text the vectorisers read."""
    return [model_text(subject, body) for subject, body in pairs]


def clean_fields(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pipeline step: (subject, body) pairs to (cleaned subject, cleaned body), each read by its own
    features."""
    return [
        (clean_subject(subject), clean_body(body, forwarded=is_forward(subject)))
        for subject, body in pairs
    ]


def subjects(fields: Sequence[tuple[str, str]]) -> list[str]:
    """The cleaned subjects of clean_fields' output."""
    return [subject for subject, _body in fields]


def bodies(fields: Sequence[tuple[str, str]]) -> list[str]:
    """The cleaned bodies of clean_fields' output."""
    return [body for _subject, body in fields]


def _word_vectoriser() -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        strip_accents="unicode",
        token_pattern=WORD_TOKENS,
        min_df=1,
        dtype=np.float32,
    )


def _char_vectoriser(max_features: int = 150_000) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        strip_accents="unicode",
        min_df=2,
        max_features=max_features,
        dtype=np.float32,
    )


def _part(pick: Any, vectoriser: TfidfVectorizer) -> Pipeline:
    return Pipeline([("pick", FunctionTransformer(pick)), ("tfidf", vectoriser)])


def build_pipeline(seed: int = SEED, subject_weight: float | None = None) -> Pipeline:
    """Cleaning, word and character TF-IDF, and a sigmoid-calibrated linear SVM, as one Pipeline.

    By default the subject and body are one text (model_text). With `subject_weight`, the body and
    the subject get their own word and character features, the subject's scaled by that weight.
    Measured by nested leave-one-writer-out evaluation (training_data/README.md), a down-weighted
    subject (0.5) lost coverage and precision, also on the writers with misleading subjects; a body
    that only thanks is caught by acknowledgement.py instead, whatever the subject says.
    The calibration is fitted on 5-fold cross-validated scores of the SVM (`ensemble=False`): one
    SVM at prediction time, which keeps single-email latency low.
    """
    svm = LinearSVC(C=2.0, random_state=seed, max_iter=10000)
    classify = CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)
    if subject_weight is None:
        features = FeatureUnion([("word", _word_vectoriser()), ("char", _char_vectoriser())])
        return Pipeline(
            [
                ("clean", FunctionTransformer(clean_pairs)),
                ("features", features),
                ("classify", classify),
            ]
        )
    features = FeatureUnion(
        [
            ("word", _part(bodies, _word_vectoriser())),
            ("char", _part(bodies, _char_vectoriser())),
            ("subject_word", _part(subjects, _word_vectoriser())),
            ("subject_char", _part(subjects, _char_vectoriser(30_000))),
        ],
        transformer_weights={"subject_word": subject_weight, "subject_char": subject_weight},
    )
    return Pipeline(
        [
            ("clean", FunctionTransformer(clean_fields)),
            ("features", features),
            ("classify", classify),
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
        """Class probabilities for (subject, body) pairs: the Pipeline's predict_proba, computed
        directly."""
        return self._probabilities(self.pipeline[0].transform(list(pairs)))

    def _probabilities(self, cleaned: Sequence[Any]) -> np.ndarray:
        """Class probabilities from the cleaning step's output.

        For the sigmoid-calibrated linear SVM this is the SVM's scores through each class's fitted
        sigmoid, normalised, exactly as scikit-learn computes it (a test checks they agree), without
        its per-class input validation, which costs more than the arithmetic for a single email.
        """
        with config_context(assume_finite=True, skip_parameter_validation=True):
            features = self.pipeline[1:-1].transform(cleaned)
            fast = self._calibration()
            if fast is None:
                predicted: np.ndarray = self.pipeline[-1].predict_proba(features)
                return predicted
            coef, intercept, a, b, columns = fast
            scores = np.asarray(features @ coef.T) + intercept
            calibrated = np.zeros((scores.shape[0], len(self.pipeline.classes_)))
            calibrated[:, columns] = expit(-(a * scores + b))
            total = calibrated.sum(axis=1, keepdims=True)
            uniform = np.full_like(calibrated, 1 / calibrated.shape[1])
            proba: np.ndarray = np.divide(calibrated, total, out=uniform, where=total != 0)
            proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
            return proba

    def _calibration(self) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray] | None:
        """Coefficients of the single calibrated SVM and its sigmoids, or None for any other final
        step."""
        if not hasattr(self, "_fast"):
            self._fast = None
            final = self.pipeline[-1]
            calibrated = getattr(final, "calibrated_classifiers_", [])
            if (
                isinstance(final, CalibratedClassifierCV)
                and final.method == "sigmoid"
                and len(calibrated) == 1
            ):
                only = calibrated[0]
                svm = only.estimator
                if (
                    isinstance(svm, (LinearSVC, SGDClassifier))
                    and len(only.calibrators) == svm.coef_.shape[0] > 1
                ):
                    columns = np.searchsorted(only.classes, svm.classes_)
                    a = np.array([c.a_ for c in only.calibrators])
                    b = np.array([c.b_ for c in only.calibrators])
                    self._fast = (svm.coef_, svm.intercept_, a, b, columns)
        return self._fast

    def decide(
        self, pairs: Sequence[tuple[str, str]], routing: Mapping[str, str] | None = None
    ) -> list[Decision]:
        """Decisions for a batch of (subject, body) pairs; a body that only thanks or confirms goes
        to staff."""
        return self.decide_cleaned(
            [
                (subject, clean_body(body, forwarded=is_forward(subject)), body)
                for subject, body in pairs
            ],
            routing,
        )

    def decide_cleaned(
        self, emails: Sequence[tuple[str, str, str]], routing: Mapping[str, str] | None = None
    ) -> list[Decision]:
        """Decisions for (subject, cleaned body, raw body) triples whose body the caller has cleaned
        once.

        The Pipeline's own cleaning step is not run again: its output is built from the cleaned
        bodies.
        """
        if not emails:
            return []
        by_fields = getattr(self.pipeline[0], "func", None) is clean_fields
        cleaned = [
            (clean_subject(subject), clean) if by_fields else cleaned_text(subject, clean)
            for subject, clean, _raw in emails
        ]
        probs = self._probabilities(cleaned)
        decisions = decide_rows(probs, self.classes, self.thresholds, routing)
        for i, (_subject, clean, raw) in enumerate(emails):
            if acknowledgement_only(clean, raw):
                decisions[i] = hold_for_staff(
                    decisions[i], probs[i], self.classes, ACKNOWLEDGEMENT_REASON
                )
        return decisions

    def decide_one(
        self, subject: str, body: str, routing: Mapping[str, str] | None = None
    ) -> Decision:
        """The decision for one email."""
        return self.decide([(subject, body)], routing)[0]
