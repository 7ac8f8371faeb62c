"""Service health as data: database, active model on disk, outbox backlog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from triage.orm import ModelVersion, OutboxItem
from triage.states import ModelStatus, OutboxStatus


def check(session: Session, models_dir: Path) -> dict[str, Any]:
    """Return the health report; raises SQLAlchemyError if the database is unreachable."""
    session.execute(text("SELECT 1"))
    active = session.scalars(
        select(ModelVersion).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).first()
    model: dict[str, Any] = {"ok": False, "version": None}
    if active is not None:
        present = (models_dir / active.version / "model.joblib").is_file()
        model = {"ok": present, "version": active.version}
        if not present:
            model["error"] = "artifact missing from the models directory"
    else:
        model["error"] = "no active model; run: flask --app app triage train"
    backlog = dict(
        session.execute(
            select(OutboxItem.status, func.count())
            .where(OutboxItem.status != OutboxStatus.SENT)
            .group_by(OutboxItem.status)
        ).all()
    )
    ok = model["ok"]
    return {
        "status": "ok" if ok else "degraded",
        "database": {"ok": True},
        "model": model,
        "outbox": {
            "pending": backlog.get(OutboxStatus.PENDING, 0) + backlog.get(OutboxStatus.SENDING, 0),
            "failed": backlog.get(OutboxStatus.FAILED, 0),
        },
    }
