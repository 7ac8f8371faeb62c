"""The trained classifier, the registry's safety checks, and the classify command's contract."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from triage.catalogue import SLUGS
from triage.classifier import compat, registry
from triage.classifier.evaluation import QualityTargets, evaluate, gate_failures
from triage.classifier.model import TrainedModel


def test_model_is_confident_on_clear_mail_and_abstains_on_noise(trained_model) -> None:  # type: ignore[no-untyped-def]
    model: TrainedModel = trained_model[0].model
    frozen = model.decide_one(
        "URGENT", "learners exam has frozen half way through, screen wont move, timer still going"
    )
    assert frozen.category == "exam_frozen"
    assert frozen.action == "auto_reply"
    assert frozen.queue == "technical"
    staff = model.decide_one(
        "qualification missing", "The Level 3 qualification is not showing for our centre at all"
    )
    assert staff.category == "qualification_not_showing"
    assert staff.action in {"route", "triage"}
    noise = model.decide_one("", "asdf qwerty zxcv")
    assert noise.action == "triage"
    assert len(frozen.alternatives) == 3 and all(slug in SLUGS for slug, _p in frozen.alternatives)


def test_training_is_reproducible(trained_model) -> None:  # type: ignore[no-untyped-def]
    result = trained_model[0]
    assert result.model.metadata["seed"] == 20261126
    assert len(result.model.metadata["training_data_sha256"]) == 64
    assert set(result.model.thresholds.per_category) == set(SLUGS) - {"other"}


def test_saved_metadata_has_versions_and_metrics(trained_model) -> None:  # type: ignore[no-untyped-def]
    models_dir = trained_model[1]
    meta = json.loads((models_dir / "vtest-1" / "metadata.json").read_text())
    for key in (
        "version",
        "created",
        "sklearn_version",
        "python_version",
        "training_data_sha256",
        "thresholds",
    ):
        assert key in meta
    assert meta["metrics"]["cross_validation"]["auto_reply"]["precision"] >= 0.98


def test_loading_refuses_a_different_scikit_learn(trained_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(trained_model[1] / "vtest-1", tmp_path / "vold")
    meta_path = tmp_path / "vold" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sklearn_version"] = "0.24.2"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        registry.ModelLoadError, match=r"trained with scikit-learn 0\.24\.2.*retrain"
    ):
        registry.load(tmp_path, "vold")


@pytest.mark.parametrize("version", ["../evil", "/etc/passwd", "a/b", "", ".hidden"])
def test_models_load_only_from_the_models_directory(tmp_path: Path, version: str) -> None:
    with pytest.raises(
        registry.ModelLoadError, match=r"invalid model version|outside the models directory"
    ):
        registry.load(tmp_path, version)


def test_symlink_out_of_the_models_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "models" / "vlink").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(registry.ModelLoadError, match="outside the models directory"):
        registry.load(tmp_path / "models", "vlink")


def _report(**auto: Any) -> dict[str, Any]:
    base = {
        "precision": 0.99,
        "coverage": 0.9,
        "other_auto_replied": 0.0,
        "staff_only_auto_replied": 0.0,
        "per_category": {
            "exam_frozen": {"wrong": 2, "auto_replied": 20},
            "extra_time": {"wrong": 0, "auto_replied": 9},
        },
    }
    base.update(auto)
    return {"auto_reply": base, "macro_f1": 0.95, "per_category": {"exam_frozen": {"f1": 0.9}}}


def test_gate_names_the_failing_category() -> None:
    reasons = gate_failures(_report(precision=0.9), QualityTargets(), "held-out test")
    assert len(reasons) == 1
    assert "exam_frozen (2 wrong of 20)" in reasons[0] and "extra_time" not in reasons[0]
    assert gate_failures(_report(), QualityTargets(), "x") == []
    assert (
        len(gate_failures(_report(coverage=0.5, other_auto_replied=0.05), QualityTargets(), "x"))
        == 2
    )


def test_evaluate_counts_auto_reply_figures(trained_model) -> None:  # type: ignore[no-untyped-def]
    model = trained_model[0].model
    pairs = [
        ("exam frozen", "the exam froze mid way, screen stuck"),
        ("invoice", "please send a copy of invoice 4471"),
    ]
    report = evaluate(["exam_frozen", "other"], model.decide(pairs))
    assert report["n"] == 2
    assert report["auto_reply"]["other_auto_replied"] == 0.0
    assert len(report["confusion_matrix"]) == 18


# --- the classify command: the contract other tools rely on -------------------------------------------


def _classify(app: Flask, stdin: str, *args: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(args=["triage", "classify", *args], input=stdin)


@pytest.fixture
def model_app(model_app_config: dict[str, Any], active_model) -> Flask:  # type: ignore[no-untyped-def]
    from triage import create_app

    return create_app(model_app_config)


def test_classify_contract(model_app: Flask) -> None:
    lines = [
        {
            "id": "a1",
            "subject": "URGENT",
            "body": "exam frozen on pc 3, screen stuck, clock running",
        },
        {
            "id": 7,
            "subject": "help",
            "body": "learner is off sick today, what do we do with his exam?",
            "from": "x@y.example",
        },
        {
            "id": "c3",
            "subject": "newsletter",
            "body": "Our autumn newsletter: 20% off all brake pads this month",
        },
    ]
    result = _classify(model_app, "\n".join(json.dumps(x) for x in lines) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["a1", 7, "c3"]
    for o in out:
        assert set(o) == {
            "id",
            "category",
            "confidence",
            "action",
            "queue",
            "alternatives",
            "answer_covers",
        }
        assert o["answer_covers"] == ([o["category"]] if o["action"] == "auto_reply" else [])
        assert o["category"] in SLUGS and 0 <= o["confidence"] <= 1
        assert o["action"] in {"auto_reply", "route", "triage"}
        assert all(isinstance(a[0], str) and isinstance(a[1], float) for a in o["alternatives"])
    assert out[0]["category"] == "exam_frozen" and out[0]["action"] == "auto_reply"
    assert out[0]["answer_covers"] == ["exam_frozen"]
    assert out[1]["category"] == "candidate_absent"
    assert out[2]["action"] == "triage" and out[2]["queue"] == "triage"


def test_classify_reports_malformed_lines_and_continues(model_app: Flask) -> None:
    stdin = "\n".join(
        [
            '{"id": "ok1", "subject": "results", "body": "when will results be released?"}',
            "{not json",
            '{"id": "bad2", "subject": 5, "body": "x"}',
            "[1,2]",
            '{"id": "nobody"}',
            '{"id": "ok2", "subject": "pin", "body": "how do we set a PIN so learners unlock their own exams"}',
        ]
    )
    result = _classify(model_app, stdin + "\n")
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out] == ["ok1", 2, "bad2", 4, "nobody", "ok2"]
    assert "error" in out[1] and "not valid JSON" in out[1]["error"]
    assert "subject must be a string" in out[2]["error"]
    assert "expected a JSON object" in out[3]["error"]
    assert "needs a subject or a body" in out[4]["error"]
    assert out[5]["category"] == "unlock_with_pin"
    assert "4 line(s) could not be classified" in result.stderr


def test_classify_without_active_model_is_a_clear_error(app: Flask) -> None:
    result = _classify(app, '{"id": 1, "subject": "a", "body": "b"}\n')
    assert result.exit_code != 0
    assert "no active model" in result.output


def test_train_refuses_to_activate_a_model_that_misses_the_gate(
    app_config: dict[str, Any], tmp_path: Path
) -> None:
    """Shuffled labels on a small data set: the gate fails, names the reason, and nothing becomes active."""
    import random

    from triage import create_app

    source = Path(__file__).resolve().parent.parent / "training_data"
    rows = [json.loads(line) for line in (source / "train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["group"] == "w1"]  # one writer: shuffled labels converge slowly
    labels = [r["label"] for r in rows]
    random.Random(1).shuffle(labels)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(
        "".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(rows, labels, strict=True))
    )
    shutil.copy(source / "test.jsonl", data / "test.jsonl")
    app = create_app({**app_config, "TRAINING_DATA_DIR": data})
    result = app.test_cli_runner().invoke(args=["triage", "train"])
    assert result.exit_code == 1
    assert "NOT activated" in result.stderr
    assert "auto-reply precision" in result.stderr or "coverage" in result.stderr
    listing = app.test_cli_runner().invoke(args=["triage", "models", "list"])
    assert "rejected" in listing.stdout
    activate = app.test_cli_runner().invoke(
        args=["triage", "models", "activate", listing.stdout.split()[0]]
    )
    assert activate.exit_code != 0 and "failed the quality gate" in activate.output


def test_fast_probabilities_equal_scikit_learns(trained_model) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from triage.classifier.dataset import load_jsonl

    model = trained_model[0].model
    pairs = [
        e.pair
        for e in load_jsonl(
            Path(__file__).resolve().parent.parent / "training_data" / "test.jsonl"
        )[:200]
    ]
    assert model._calibration() is not None
    np.testing.assert_allclose(
        model.probabilities(pairs), model.pipeline.predict_proba(pairs), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        model.probabilities(pairs[:1]),
        model.pipeline.predict_proba(pairs[:1]),
        rtol=1e-6,
        atol=1e-9,
    )


def test_a_large_set_fits_thresholds_on_distinct_emails_and_keeps_the_model_fitted_on_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The generated large set of the size curve (the training file, then copies with word
    dropout): the thresholds come from grouped cross-validation on the distinct emails only (the
    copies left out), on a sample of them above THRESHOLD_SAMPLE (lowered here to keep the test
    fast); the model kept is the same Pipeline, fitted on every example, copies included."""
    import numpy as np

    from bench.size_curve import grown
    from triage.classifier import training
    from triage.classifier.dataset import load_jsonl
    from triage.classifier.near_copies import copy_of

    data = Path(__file__).resolve().parent.parent / "training_data"
    base = load_jsonl(data / "train.jsonl")[::8]
    large = grown(base, 3 * len(base))
    assert len({ex.id for ex in large}) == len(large) == 3 * len(base)
    firsts = copy_of(large)
    unique = [ex for i, ex in enumerate(large) if firsts[i] == i]
    copies = len(large) - len(unique)
    assert copies >= 0.9 * 2 * len(base)  # nearly every copy is found ...
    assert all(large[firsts[i]].label == ex.label for i, ex in enumerate(large))
    assert sum("~" not in ex.id for ex in unique) >= len(base) - 3  # ... and the originals stay

    monkeypatch.setattr(training, "THRESHOLD_SAMPLE", 400)
    result = training.train(large, None, "vlarge", n_jobs=2)
    model = result.model
    assert model.metadata["validation"] == (
        "grouped cross-validation (out-of-fold) on a random sample of 400 of the "
        f"{len(unique)} distinct emails ({copies} near-copies left out)"
    )
    assert result.cv_report["n"] == 400 and model.metadata["n_train"] == len(large)
    assert (
        model.pipeline.named_steps["classify"]
        .calibrated_classifiers_[0]
        .estimator.__class__.__name__
        == "LinearSVC"
    )
    pairs = [
        ("URGENT", "learners exam has frozen half way through, screen wont move"),
        ("invoice", "copy of invoice 4471 please"),
    ]
    np.testing.assert_allclose(
        model.probabilities(pairs), model.pipeline.predict_proba(pairs), rtol=1e-6, atol=1e-9
    )
    assert model.decide_one(*pairs[0]).category == "exam_frozen"
    monkeypatch.setattr(training, "THRESHOLD_SAMPLE", 8_000)
    everything = training.train(large, None, "vall", n_jobs=2)
    assert everything.model.metadata["validation"] == (
        f"grouped cross-validation (out-of-fold) on the {len(unique)} distinct emails "
        f"({copies} near-copies left out)"
    )
    assert everything.cv_report["n"] == len(unique)


def test_training_keeps_each_writer_together() -> None:
    """Copies by one writer end up next to each other, groups in order of first appearance."""
    from triage.classifier.dataset import Example
    from triage.classifier.training import ordered_by_group

    rows = [Example("s", str(i), "other", g, f"id{i}") for i, g in enumerate("abcabca")]
    assert [ex.group for ex in ordered_by_group(rows)] == list("aaabbcc")
    assert [ex.body for ex in ordered_by_group(rows)][:3] == ["0", "3", "6"]


OLD_PICKLE = Path(__file__).parent / "data" / "pipeline-saved-by-716eb17-parent.joblib"


def test_a_model_pickled_before_the_wing_move_loads_through_the_rename_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file names `triage.model.clean_pairs` (saved by the code at 716eb17^); it loads and predicts."""
    import joblib
    import sklearn

    for old in compat.RENAMED_MODULES:
        monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"triage\.model"):
        joblib.load(OLD_PICKLE)  # without the map, the old path is unknown
    folder = tmp_path / "v-old"
    folder.mkdir()
    shutil.copy(OLD_PICKLE, folder / registry.ARTIFACT)
    thresholds = {"per_category": {}, "auto_reply_target": 0.98, "route_target": 0.9}
    metadata = {"sklearn_version": sklearn.__version__, "thresholds": thresholds}
    (folder / registry.METADATA).write_text(json.dumps(metadata))
    model = registry.load(tmp_path, "v-old")
    assert list(model.pipeline.predict([("locked", "the exam is locked after the keycode")])) == [
        "a"
    ]
