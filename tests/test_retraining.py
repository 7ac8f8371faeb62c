"""Retraining from resolved tickets: a learned new phrasing is promoted, poisoned labels are refused, rollback works."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from triage import create_app
from triage.classifier import registry
from triage.classifier.dataset import load_jsonl
from triage.classifier.training import train
from triage.orm import Message, Ticket, utcnow

DATA = Path(__file__).resolve().parent.parent / "training_data"
BASE_WRITERS = {"w2", "w3", "w9"}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A smaller training folder (four writers) and a champion trained on it, to keep retrains quick."""
    folder = tmp_path_factory.mktemp("data")
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    (folder / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r["group"] in BASE_WRITERS)
    )
    (folder / "test.jsonl").write_text((DATA / "test.jsonl").read_text())
    models = tmp_path_factory.mktemp("models")
    result = train(load_jsonl(folder / "train.jsonl"), None, "vchampion", n_jobs=2)
    registry.save(result.model, models)
    return folder, models


@pytest.fixture
def retrain_app(
    app_config: dict[str, Any], small_data: tuple[Path, Path], session: Session
) -> Flask:
    """An app whose champion is the small model, active in this test's database."""
    folder, models = small_data
    app_config.update(
        {"TRAINING_DATA_DIR": folder, "MODELS_DIR": models, "MODEL_CHECK_INTERVAL": 0.0}
    )
    champion = registry.load(models, "vchampion")
    registry.register(session, champion, "test", True, "")
    registry.activate(session, "vchampion", "test")
    session.commit()
    return create_app(app_config)


def _resolved_tickets(app: Flask, emails: list[tuple[str, str, str]]) -> None:
    """Store resolved tickets whose first message is (subject, body) and whose confirmed category is given."""
    with app.extensions["triage.sessions"]() as s:
        for i, (subject, body, label) in enumerate(emails):
            t = Ticket(
                centre_email=f"c{i % 40}@centre{i % 40}.example",
                subject=subject,
                status="resolved",
                predicted_category="other",
                confirmed_category=label,
                resolved_at=utcnow(),
            )
            t.messages.append(
                Message(
                    direction="inbound",
                    message_id=f"<sim{i}@centre.example>",
                    subject=subject,
                    body_text=body,
                    clean_text=body,
                    from_address=t.centre_email,
                )
            )
            s.add(t)
        s.commit()


NEW_PHRASING = [
    "the candidate screen has a grey padlock and says session held",
    "grey padlock showing, it says session held, learner cant start",
    "after the access code the screen goes to session held with a padlock",
    "all of them are stuck on session held (grey padlock icon)",
    "she typed her code fine but now there is a padlock and the words session held",
    "padlock screen - session held - what do we click",
]


def _phrasing_tickets(n: int, seed: int = 3) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    subjects = [
        "help",
        "URGENT",
        "exam",
        "session held??",
        "padlock",
        "room 4",
        "test this morning",
        "",
    ]
    names = ["Jay", "Priya", "Tom", "Ewa", "Sam", "Kofi", "Lena", "Mo", "Aled", "Ruth"]
    out = []
    for _ in range(n):
        body = (
            f"{rng.choice(['hi', 'hello', 'morning', ''])} {rng.choice(NEW_PHRASING)} "
            f"for {rng.choice(names)} on pc {rng.randint(1, 30)} {rng.choice(['thanks', 'pls help', 'cheers', ''])}"
        )
        out.append((rng.choice(subjects), body.strip(), "exam_locked_after_keycode"))
    return out


def test_a_new_phrasing_confirmed_by_staff_is_learned_and_promoted(retrain_app: Flask) -> None:
    probe = ("help", "the screen has a grey padlock and says session held for my learner")
    before = registry.load(
        retrain_app.extensions["triage.settings"].models_dir, "vchampion"
    ).decide_one(*probe)
    _resolved_tickets(retrain_app, _phrasing_tickets(300))
    result = retrain_app.test_cli_runner().invoke(args=["triage", "retrain"])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "gate decided by " in result.output
    provider = retrain_app.extensions["triage.model_provider"]
    provider.refresh()
    after = provider.current().decide_one(*probe)
    assert after.category == "exam_locked_after_keycode"
    assert before.category != "exam_locked_after_keycode" or before.confidence < after.confidence
    listing = retrain_app.test_cli_runner().invoke(args=["triage", "models", "list"])
    assert listing.output.splitlines()[0].split()[1] == "active"


def test_poisoned_labels_are_refused_and_the_champion_stays(retrain_app: Flask) -> None:
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["group"] not in BASE_WRITERS][:600]
    labels = [r["label"] for r in rows]
    random.Random(5).shuffle(labels)
    _resolved_tickets(
        retrain_app, [(r["subject"], r["body"], y) for r, y in zip(rows, labels, strict=True)]
    )
    result = retrain_app.test_cli_runner().invoke(args=["triage", "retrain"])
    assert result.exit_code == 1, result.output
    assert "kept the champion" in result.output and "gate decided by " in result.output
    with retrain_app.extensions["triage.sessions"]() as s:
        assert registry.active_version(s) == "vchampion"


def test_rollback_restores_the_previous_version_and_processes_follow(
    retrain_app: Flask, small_data
) -> None:  # type: ignore[no-untyped-def]
    _folder, models = small_data
    provider = retrain_app.extensions["triage.model_provider"]
    assert provider.current().version == "vchampion"
    second = registry.load(models, "vchampion")
    second.metadata = {**second.metadata, "version": "vsecond"}
    if not (models / "vsecond").exists():
        registry.save(second, models)
    with retrain_app.extensions["triage.sessions"]() as s:
        registry.register(s, second, "test", True, "")
        registry.activate(s, "vsecond", "test")
        s.commit()
    assert provider.current().version == "vsecond"  # a running process follows without restart
    result = retrain_app.test_cli_runner().invoke(args=["triage", "models", "rollback"])
    assert result.exit_code == 0 and "vchampion is now active" in result.output
    assert provider.current().version == "vchampion"


def test_retrain_job_runs_in_the_worker(retrain_app: Flask) -> None:
    from triage.orm import Job
    from triage.worker.jobs import request_retrain, run_queued

    with retrain_app.extensions["triage.sessions"]() as s:
        job = request_retrain(s, "user:boss@imi.test")
        again = request_retrain(s, "user:boss@imi.test")
        assert again.id == job.id  # one at a time
        s.commit()
        job_id = job.id
    sessions, settings = (
        retrain_app.extensions["triage.sessions"],
        retrain_app.extensions["triage.settings"],
    )
    assert run_queued(sessions, settings, "w1") == 1
    assert run_queued(sessions, settings, "w1") == 0
    with sessions() as s:
        done = s.get(Job, job_id)
        assert done is not None and done.status == "done" and done.result["version"]


def _report(
    precision: float, coverage: float, macro_f1: float, other: float = 0.0
) -> dict[str, Any]:
    return {
        "macro_f1": macro_f1,
        "auto_reply": {
            "precision": precision,
            "coverage": coverage,
            "other_auto_replied": other,
            "staff_only_auto_replied": 0.0,
        },
    }


@pytest.mark.parametrize(
    ("challenger", "champion", "promoted", "rule"),
    [
        # precision first: never below the target, whatever the coverage gained
        (_report(0.97, 0.95, 0.99), _report(0.99, 0.80, 0.95), False, "precision"),
        (_report(0.99, 0.95, 0.99, other=0.05), _report(0.99, 0.80, 0.95), False, "precision"),
        # a champion below the target on this set is not replaced by one that answers less: the
        # set's newest tickets may be what is wrong (poisoned labels)
        (_report(1.0, 0.0, 0.66), _report(0.83, 0.05, 0.80), False, "coverage"),
        # then coverage, with macro-F1 within its tolerance; more coverage never excuses a
        # macro-F1 drop (poisoned labels)
        (_report(0.985, 0.88, 0.955), _report(0.995, 0.85, 0.96), True, "coverage"),
        (_report(0.985, 0.88, 0.93), _report(0.995, 0.85, 0.96), False, "macro-F1"),
        (_report(0.999, 0.84, 0.99), _report(0.985, 0.86, 0.90), False, "coverage"),
        # coverage level (within half a point): macro-F1, with its tolerance
        (_report(0.99, 0.853, 0.945), _report(0.99, 0.850, 0.95), True, "macro-F1"),
        (_report(0.99, 0.850, 0.93), _report(0.99, 0.852, 0.95), False, "macro-F1"),
        (_report(0.99, 0.50, 0.50), None, True, "no champion"),
    ],
)
def test_the_gate_compares_precision_then_coverage_then_macro_f1(
    challenger: dict[str, Any], champion: dict[str, Any] | None, promoted: bool, rule: str
) -> None:
    from triage.classifier.evaluation import QualityTargets
    from triage.classifier.retraining import judge

    verdict = judge(challenger, champion, QualityTargets())
    assert (verdict.promoted, verdict.decided_by) == (promoted, rule)
    assert bool(verdict.reasons) != promoted and verdict.explanation
