"""Retraining benchmark: `flask triage retrain`'s work on N resolved tickets against one bare Pipeline fit.

N is 1,000 in the quick profile and 50,000 (the issue's full size) with BENCH_FULL=1; BENCH_RETRAIN_TICKETS overrides both.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

from bench.common import REPO, full_profile, row, shared_model, timed
from triage import schema
from triage.classifier import registry
from triage.classifier.dataset import TRAIN_FILE
from triage.classifier.model import build_pipeline
from triage.classifier.retraining import build_datasets, retrain
from triage.config import Settings
from triage.database import make_engine, make_session_factory
from triage.orm import Message, Ticket, utcnow


def _tickets(n: int, seed: int = 11) -> list[tuple[str, str, str]]:
    rows = [
        json.loads(line) for line in (REPO / "training_data" / TRAIN_FILE).read_text().splitlines()
    ]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.choice(rows)
        out.append(
            (
                r["subject"],
                f"{r['body']}\nCentre {rng.randint(10000, 99999)}, learner ref {i}",
                r["label"],
            )
        )
    return out


def main() -> None:
    """Store N resolved tickets in a scratch database, time a retrain, and a bare fit on the same texts."""
    n = int(os.environ.get("BENCH_RETRAIN_TICKETS", "50000" if full_profile() else "1000"))
    print(f"== retrain on {n} resolved tickets (target at 50,000: under 120 s) ==")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        settings = Settings(
            instance_path=scratch,
            database_url=f"sqlite:///{scratch / 'bench.db'}",
            models_dir=scratch / "models",
            training_data_dir=REPO / "training_data",
        )
        engine = make_engine(settings.database_url)
        schema.upgrade(engine)
        sessions = make_session_factory(engine)
        with sessions() as s:
            for i, (subject, body, label) in enumerate(_tickets(n)):
                t = Ticket(
                    centre_email=f"c{i % 500}@centre{i % 500}.example",
                    subject=subject,
                    status="resolved",
                    predicted_category=label,
                    confirmed_category=label,
                    resolved_at=utcnow(),
                )
                t.messages.append(
                    Message(
                        direction="inbound",
                        message_id=f"<b{i}@bench>",
                        subject=subject,
                        body_text=body,
                        clean_text=body,
                        from_address=t.centre_email,
                    )
                )
                s.add(t)
            s.commit()
        champion = shared_model()
        registry.save(champion, settings.models_dir)
        with sessions() as s:
            registry.register(s, champion, "bench", True, "")
            registry.activate(s, champion.version, "bench")
            s.commit()
        with sessions() as s:
            training, _evaluation, _n = build_datasets(s, settings)
        make = build_pipeline
        bare_s, _ = timed(
            lambda: make().fit([e.pair for e in training], [e.label for e in training])
        )
        retrain_s, outcome = timed(lambda: retrain(sessions, settings, "bench", n_jobs=2))
        print(
            row(
                "retrain (data set, grouped CV, fit, evaluation, save)",
                retrain_s,
                "s",
                bare_s,
                "lower",
            )
        )
        print(row(f"one bare {make.__name__}() fit on the same training set", bare_s, "s"))
        print(
            f"  training emails {outcome.n_train}, from tickets {outcome.n_tickets_train}, frozen evaluation {outcome.n_eval}, "
            f"promoted {outcome.promoted}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
