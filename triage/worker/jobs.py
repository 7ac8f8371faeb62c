"""Background jobs requested from the web app and run by the worker (today: retraining).

A long-running worker runs a job in a child process of its own (JobRunner), so the worker's loop
keeps fetching, processing and answering mail while a model trains, and the memory training takes
is given back when it ends. While the child runs, the worker beats the job's heartbeat; a job whose
heartbeat stopped (its worker was killed or its host lost) is queued again by the next worker that
looks, up to MAX_ATTEMPTS starts, instead of staying "running" for ever.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import asdict
from datetime import timedelta
from multiprocessing.process import BaseProcess

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.retraining import retrain
from triage.config import Settings
from triage.orm import Job, utcnow
from triage.states import JobKind, JobStatus

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # how often a worker notes that the job it runs is still running
STALE_SECONDS = 120.0  # a running job not beaten for this long was left by a worker that stopped
MAX_ATTEMPTS = 3  # starts of one job before it is given up as failed
STOP_SECONDS = 10.0  # how long a stopping worker waits for the job's process after SIGTERM


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


def run_job(sessions: sessionmaker[Session], settings: Settings, job_id: int, worker: str) -> None:
    """Run a claimed job to its end, recording its outcome (done, or failed with the reason)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        requested_by = job.requested_by if job is not None else ""
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


def run_queued(sessions: sessionmaker[Session], settings: Settings, worker: str) -> int:
    """Claim and run one queued job in this process; returns 1 if a job ran, else 0."""
    requeue_abandoned(sessions)
    job_id = claim_next(sessions, worker)
    if job_id is None:
        return 0
    run_job(sessions, settings, job_id, worker)
    return 1


def requeue_abandoned(sessions: sessionmaker[Session], stale_seconds: float = STALE_SECONDS) -> int:
    """Queue again each running job whose worker stopped beating it (failed after MAX_ATTEMPTS
    starts); returns how many."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    with sessions() as session, session.begin():
        abandoned = session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.RUNNING,
                (Job.heartbeat_at < cutoff)
                | (Job.heartbeat_at.is_(None) & (Job.started_at < cutoff)),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for job in abandoned:
            lost = f"the worker running it ({job.claimed_by}) stopped"
            if job.attempts >= MAX_ATTEMPTS:
                job.status, job.finished_at = JobStatus.FAILED, utcnow()
                job.progress = f"failed: {lost}, {job.attempts} times; not started again"
            else:
                job.status, job.claimed_by = JobStatus.QUEUED, None
                job.progress = f"queued again: {lost}"
            log.warning("job %s: %s", job.id, job.progress)
        return len(abandoned)


def claim_next(sessions: sessionmaker[Session], worker: str) -> int | None:
    """Mark the oldest queued job running for `worker` (SKIP LOCKED); its id."""
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
        now = utcnow()
        job.status, job.claimed_by, job.started_at, job.heartbeat_at = (
            JobStatus.RUNNING,
            worker,
            now,
            now,
        )
        job.attempts += 1
        job.progress = "started"
        return job.id


def beat(sessions: sessionmaker[Session], job_id: int, worker: str) -> None:
    """Note that `worker` is still running the job."""
    with sessions() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker, Job.status == JobStatus.RUNNING)
            .values(heartbeat_at=utcnow())
        )


def hand_back(sessions: sessionmaker[Session], job_id: int, worker: str, why: str) -> None:
    """Queue a job this worker was running again (it stopped before the job ended)."""
    with sessions() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.claimed_by == worker, Job.status == JobStatus.RUNNING)
            .values(status=JobStatus.QUEUED, claimed_by=None, progress=f"queued again: {why}")
        )


def fail_if_unfinished(sessions: sessionmaker[Session], job_id: int, why: str) -> None:
    """Mark a job failed unless it already recorded its outcome."""
    with sessions() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
            .values(status=JobStatus.FAILED, finished_at=utcnow(), progress=f"failed: {why}")
        )


def _child_main(settings: Settings, job_id: int, worker: str) -> None:
    """The job's own process: its own database connections, the job run, then exit."""
    from joblib.externals.loky import get_reusable_executor

    from triage import configure_logging
    from triage.database import make_engine, make_session_factory
    from triage.worker.supervisor import stop_with_parent

    stop_with_parent()  # a worker killed outright takes its job's process with it
    configure_logging(settings)
    engine = make_engine(settings.database_url)
    try:
        run_job(make_session_factory(engine), settings, job_id, worker)
    finally:
        engine.dispose()
        # training's worker processes wait to be reused (5 minutes): end them, or the exit waits
        get_reusable_executor().shutdown(wait=True, kill_workers=True)


class JobRunner:
    """Runs one job at a time in a child process for a long-running worker, one short step per
    round of the worker's loop."""

    def __init__(self, settings: Settings, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        self.process: BaseProcess | None = None
        self.job_id: int | None = None
        self.last_beat = 0.0
        self.last_sweep = (
            -HEARTBEAT_SECONDS
        )  # abandoned jobs are looked for this often, not each round

    @property
    def busy(self) -> bool:
        """Whether a job's process is running."""
        return self.process is not None

    def step(self, sessions: sessionmaker[Session], now: float) -> int:
        """Beat the running job, note one that ended, or start the next queued one; returns 1
        when a job started or ended."""
        if self.process is not None and self.job_id is not None:
            if self.process.is_alive():
                if now - self.last_beat >= HEARTBEAT_SECONDS:
                    beat(sessions, self.job_id, self.worker)
                    self.last_beat = now
                return 0
            code = self.process.exitcode
            if code != 0:
                log.error("job %s: its process ended with exit code %s", self.job_id, code)
            fail_if_unfinished(sessions, self.job_id, f"its process ended with exit code {code}")
            self.process, self.job_id = None, None
            return 1
        if now - self.last_sweep >= HEARTBEAT_SECONDS:
            requeue_abandoned(sessions)
            self.last_sweep = now
        job_id = claim_next(sessions, self.worker)
        if job_id is None:
            return 0
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited locks
        process = context.Process(
            target=_child_main,
            args=(self.settings, job_id, self.worker),
            name=f"triage-job-{job_id}",
            daemon=False,  # training starts processes of its own (joblib); a daemon cannot
        )
        process.start()
        self.process, self.job_id, self.last_beat = process, job_id, now
        log.info("job %s started in process %s", job_id, process.pid)
        return 1

    def stop(self, sessions: sessionmaker[Session]) -> None:
        """End the running job's process and queue the job again for the next worker."""
        process, job_id = self.process, self.job_id
        if process is None or job_id is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        self.process, self.job_id = None, None
        if process.exitcode == 0:
            return
        try:
            hand_back(sessions, job_id, self.worker, "the worker running it was stopped")
        except Exception:
            log.exception("job %s could not be queued again; the next worker will", job_id)
