"""Background jobs (retraining) in a long-running worker: a process of their own, so mail keeps flowing;
a heartbeat, so a job left by a stopped or killed worker is started again instead of blocking every later one."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from tests.mailutil import make_email
from tests.test_retraining import retrain_app, small_data  # noqa: F401 (fixtures)
from triage.helpdesk import tokens
from triage.orm import Job, Ticket, utcnow
from triage.worker import jobs
from triage.worker.loop import Worker
from triage.worker.tasks import Role, main_loop_tasks, task_context

JOB_LIMIT_SECONDS = 300  # a generous bound for a retrain on the small data set on a busy machine


def _queue_retrain(app: Flask) -> int:
    with app.extensions["triage.sessions"]() as s:
        job = jobs.request_retrain(s, "user:boss@imi.test")
        s.commit()
        return job.id


def _job(app: Flask, job_id: int) -> Job:
    with app.extensions["triage.sessions"]() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _until_ended(runner: jobs.JobRunner, app: Flask) -> None:
    sessions = app.extensions["triage.sessions"]
    deadline = time.monotonic() + JOB_LIMIT_SECONDS
    while runner.busy and time.monotonic() < deadline:
        runner.step(sessions, time.monotonic())
        time.sleep(0.2)
    assert not runner.busy, "the job's process did not end"


def test_mail_is_processed_while_a_retrain_runs_in_its_own_process(retrain_app: Flask) -> None:
    app = retrain_app
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    job_id = _queue_retrain(app)
    ctx = task_context(settings, sessions, background_jobs=True)
    worker = Worker(main_loop_tasks(ctx, Role.MAIN), sessions, settings, ctx.stopping)

    assert worker.run_once()["run-jobs"] == 1  # started, not run here
    assert ctx.jobs is not None and ctx.jobs.busy
    child = ctx.jobs.process
    assert child is not None and child.pid != os.getpid() and child.is_alive()
    running = _job(app, job_id)
    assert running.status == "running" and running.attempts == 1 and running.heartbeat_at

    # the worker's loop goes on: an email arriving now is a ticket while the model trains
    with sessions() as s:
        _row, token = tokens.create_token(s, "tests")
        s.commit()
    raw = make_email(subject="Exam frozen", body="The exam has frozen on one PC, what do we do?")
    response = app.test_client().post(
        "/api/v1/inbound",
        data=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 202
    done = worker.run_once()
    assert done["process-inbound"] == 1 and done["run-jobs"] == 0
    with sessions() as s:
        assert len(s.scalars(select(Ticket)).all()) == 1
    assert _job(app, job_id).status == "running", "the retrain ended before the email was processed"

    # while the job runs, its heartbeat is kept up; then the outcome is recorded by the job itself
    with sessions() as s, s.begin():
        s.execute(update(Job).values(heartbeat_at=utcnow() - timedelta(minutes=1)))
    ctx.jobs.last_beat = -jobs.HEARTBEAT_SECONDS
    worker.run_once()
    if ctx.jobs.busy:
        beaten = _job(app, job_id).heartbeat_at
        assert beaten is not None and utcnow() - beaten < timedelta(seconds=30)
    _until_ended(ctx.jobs, app)
    ended = _job(app, job_id)
    assert ended.status == "done" and ended.result["version"], ended.progress
    assert child.exitcode == 0


def test_a_stopped_worker_hands_its_job_back_and_the_next_one_finishes_it(
    retrain_app: Flask,
) -> None:
    app = retrain_app
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    job_id = _queue_retrain(app)
    first = jobs.JobRunner(settings, "host:1")
    assert first.step(sessions, time.monotonic()) == 1
    first.stop(sessions)  # SIGTERM, as when the worker itself is stopped
    handed_back = _job(app, job_id)
    assert handed_back.status == "queued" and handed_back.claimed_by is None
    assert "queued again: the worker running it was stopped" in handed_back.progress
    with sessions() as s:  # still one retrain, not a second one beside it
        assert jobs.request_retrain(s, "user:other@imi.test").id == job_id

    second = jobs.JobRunner(settings, "host:2")
    assert second.step(sessions, time.monotonic()) == 1
    _until_ended(second, app)
    finished = _job(app, job_id)
    assert (finished.status, finished.claimed_by, finished.attempts) == ("done", "host:2", 2)


def test_a_job_process_killed_outright_is_recorded_as_failed(retrain_app: Flask) -> None:
    app = retrain_app
    sessions, settings = app.extensions["triage.sessions"], app.extensions["triage.settings"]
    job_id = _queue_retrain(app)
    runner = jobs.JobRunner(settings, "host:1")
    runner.step(sessions, time.monotonic())
    assert runner.process is not None and runner.process.pid is not None
    os.kill(runner.process.pid, signal.SIGKILL)  # the out-of-memory killer, say
    runner.process.join(30)
    assert runner.step(sessions, time.monotonic()) == 1
    failed = _job(app, job_id)
    assert failed.status == "failed" and "exit code -9" in failed.progress
    with sessions() as s:  # and a new retrain can be asked for
        assert jobs.request_retrain(s, "user:boss@imi.test").id != job_id


def _abandon(app: Flask, job_id: int, attempts: int, **values: Any) -> None:
    with app.extensions["triage.sessions"]() as s, s.begin():
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status="running",
                claimed_by="gone:42",
                attempts=attempts,
                started_at=utcnow() - timedelta(hours=1),
                **values,
            )
        )


def test_a_job_whose_worker_died_is_queued_again_then_given_up(retrain_app: Flask) -> None:
    app = retrain_app
    sessions = app.extensions["triage.sessions"]
    job_id = _queue_retrain(app)

    _abandon(app, job_id, 1, heartbeat_at=utcnow() - timedelta(seconds=10))  # still beating
    assert jobs.requeue_abandoned(sessions) == 0
    assert _job(app, job_id).status == "running"

    _abandon(app, job_id, 1, heartbeat_at=utcnow() - timedelta(minutes=10))  # a silent worker
    assert jobs.requeue_abandoned(sessions) == 1
    job = _job(app, job_id)
    assert job.status == "queued" and "the worker running it (gone:42) stopped" in job.progress

    _abandon(app, job_id, 1, heartbeat_at=None)  # claimed by a worker older than heartbeats
    assert jobs.requeue_abandoned(sessions) == 1 and _job(app, job_id).status == "queued"

    _abandon(app, job_id, jobs.MAX_ATTEMPTS, heartbeat_at=utcnow() - timedelta(minutes=10))
    assert jobs.requeue_abandoned(sessions) == 1
    job = _job(app, job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert f"{jobs.MAX_ATTEMPTS} times; not started again" in job.progress
    with sessions() as s:  # the next retrain asked for is a new job, not blocked by the old one
        assert jobs.request_retrain(s, "user:boss@imi.test").id != job_id
