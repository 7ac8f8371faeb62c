"""Service health as data: database, active model on disk, outbox backlog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from triage.mail import channel_health
from triage.mail.channels import Channels
from triage.orm import ModelVersion, OutboxItem, utcnow
from triage.states import ModelStatus, OutboxStatus


def check(
    session: Session,
    models_dir: Path,
    channels: Channels | None = None,
    alert_minutes: int = 30,
) -> dict[str, Any]:
    """Return the health report; raises SQLAlchemyError if the database is unreachable.

    Mail channels are reported (failing: for over `alert_minutes`) without changing the status: a
    refused mailbox login must not take the web app out of its load balancer."""
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
        **({"channels": _channels(session, channels, alert_minutes)} if channels else {}),
    }


def _channels(session: Session, channels: Channels, alert_minutes: int) -> dict[str, Any]:
    """Each channel: ok unless failing for over `alert_minutes`, with its last error."""
    now = utcnow()
    report: dict[str, Any] = {}
    for status in channel_health.overview(session, channels):
        failing = status.failing_longer_than(alert_minutes, now)
        entry: dict[str, Any] = {"ok": not failing}
        if status.last_success_at:
            entry["last_success_at"] = status.last_success_at.isoformat()
        if status.failing_since:
            entry["failing_since"] = status.failing_since.isoformat()
            entry["error"] = status.last_error
        report[status.name] = entry
    return report
