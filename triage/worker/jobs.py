"""Background jobs requested from the web app and run by the worker (today: retraining)."""

from __future__ import annotations

import logging
from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.retraining import retrain
from triage.config import Settings
from triage.orm import Job, utcnow
from triage.states import JobKind, JobStatus

log = logging.getLogger(__name__)


def request_retrain(session: Session, by: str) -> Job:
    """Queue a retrain unless one is already queued or running; returns that job."""
    existing = session.scalars(
        select(Job).where(
            Job.kind == JobKind.RETRAIN, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING))
        )
    ).first()
    if existing is not None:
        return existing
    job = Job(kind=JobKind.RETRAIN, requested_by=by, progress="waiting for a worker")
    session.add(job)
    session.flush()
    return job


def _set(sessions: sessionmaker[Session], job_id: int, **values: object) -> None:
    with sessions() as session, session.begin():
        job = session.get(Job, job_id)
        if job is not None:
            for key, value in values.items():
                setattr(job, key, value)


def run_queued(sessions: sessionmaker[Session], settings: Settings, worker: str) -> int:
    """Claim and run one queued job; returns 1 if a job ran, else 0."""
    claimed = _claim_next(sessions, worker)
    if claimed is None:
        return 0
    job_id, requested_by = claimed
    try:
        outcome = retrain(
            sessions,
            settings,
            f"worker:{worker} for {requested_by}",
            progress=lambda msg: _set(sessions, job_id, progress=msg),
        )
        summary = {
            k: v
            for k, v in asdict(outcome).items()
            if k not in {"challenger", "champion", "details"}
        }
        _set(sessions, job_id, status=JobStatus.DONE, finished_at=utcnow(), result=summary)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _set(
            sessions,
            job_id,
            status=JobStatus.FAILED,
            finished_at=utcnow(),
            progress=f"failed: {type(exc).__name__}: {exc}",
        )
    return 1


def _claim_next(sessions: sessionmaker[Session], worker: str) -> tuple[int, str] | None:
    """Mark the oldest queued job running for `worker` (SKIP LOCKED); its id and requester."""
    with sessions() as session, session.begin():
        job = session.scalars(
            select(Job)
            .where(Job.status == JobStatus.QUEUED)
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if job is None:
            return None
        job.status, job.claimed_by, job.started_at, job.progress = (
            JobStatus.RUNNING,
            worker,
            utcnow(),
            "started",
        )
        return job.id, job.requested_by
