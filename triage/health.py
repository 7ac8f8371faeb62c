"""Service health as data: database, active model on disk, outbox backlog and delivery problems."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from triage.mail import channel_health
from triage.mail.channels import Channels
from triage.orm import ModelVersion, OutboxItem, utcnow
from triage.states import ModelStatus, OutboxStatus

# a row retried this many times means its transport keeps failing
FAILING_ATTEMPTS = 2


def check(
    session: Session,
    models_dir: Path,
    *,
    channels: Channels | None = None,
    alert_minutes: int = 30,
    lease: timedelta = timedelta(minutes=10),
    backlog_alert: timedelta = timedelta(minutes=15),
) -> dict[str, Any]:
    """Return the health report; raises SQLAlchemyError if the database is unreachable.

    `status` is `ok`; `degraded` with `serving: false` when no usable model is active (the service
    cannot decide); `degraded` with `serving: true` when mail is not going out as it should, with
    what is wrong in `problems`. Mail channels are reported (failing: for over `alert_minutes`)
    without changing the status: a refused mailbox login must not take the web app out of its
    load balancer.
    """
    session.execute(text("SELECT 1"))
    model = _model(session, models_dir)
    backlog = dict(
        session.execute(
            select(OutboxItem.status, func.count())
            .where(OutboxItem.status != OutboxStatus.SENT)
            .group_by(OutboxItem.status)
        ).all()
    )
    delivery = _delivery(session, lease)
    problems = _problems(delivery, lease, backlog_alert)
    if not model["ok"]:
        problems.insert(0, f"model: {model['error']}")
    return {
        "status": "ok" if not problems else "degraded",
        "serving": bool(model["ok"]),
        "problems": problems,
        "database": {"ok": True},
        "model": model,
        "outbox": {
            "pending": backlog.get(OutboxStatus.PENDING, 0) + backlog.get(OutboxStatus.SENDING, 0),
            "failed": backlog.get(OutboxStatus.FAILED, 0),
        },
        "delivery": delivery,
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


def _model(session: Session, models_dir: Path) -> dict[str, Any]:
    active = session.scalars(
        select(ModelVersion).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).first()
    if active is None:
        return {
            "ok": False,
            "version": None,
            "error": "no active model; run: flask --app app triage train",
        }
    present = (models_dir / active.version / "model.joblib").is_file()
    model: dict[str, Any] = {"ok": present, "version": active.version}
    if not present:
        model["error"] = "artifact missing from the models directory"
    return model


def _delivery(session: Session, lease: timedelta) -> dict[str, Any]:
    """Rows stuck in `sending`, how long the oldest due row has waited, rows that keep failing."""
    now = utcnow()
    stuck = session.scalar(
        select(func.count()).where(
            OutboxItem.status == OutboxStatus.SENDING, OutboxItem.claimed_at < now - lease
        )
    )
    oldest_due = session.scalar(
        select(func.min(OutboxItem.next_attempt_at)).where(
            OutboxItem.status == OutboxStatus.PENDING, OutboxItem.next_attempt_at <= now
        )
    )
    failing = session.execute(
        select(func.count(), func.max(OutboxItem.id)).where(
            OutboxItem.status == OutboxStatus.PENDING, OutboxItem.attempts >= FAILING_ATTEMPTS
        )
    ).one()
    last_error = (
        session.scalar(select(OutboxItem.last_error).where(OutboxItem.id == failing[1]))
        if failing[1] is not None
        else None
    )
    return {
        "stuck_sending": stuck or 0,
        "oldest_due_seconds": round((now - oldest_due).total_seconds()) if oldest_due else 0,
        "retrying": failing[0] or 0,
        "last_error": last_error,
    }


def _problems(delivery: dict[str, Any], lease: timedelta, backlog_alert: timedelta) -> list[str]:
    problems = []
    if delivery["stuck_sending"]:
        problems.append(
            f"outbox: {delivery['stuck_sending']} rows in sending for over "
            f"{lease.total_seconds():.0f} s (no worker is renewing them)"
        )
    if delivery["oldest_due_seconds"] > backlog_alert.total_seconds():
        problems.append(f"outbox: due mail has waited {delivery['oldest_due_seconds']} s")
    if delivery["retrying"]:
        problems.append(
            f"outbox: {delivery['retrying']} rows failed {FAILING_ATTEMPTS} or more times: "
            f"{delivery['last_error']}"
        )
    return problems
