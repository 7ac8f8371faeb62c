"""The signal that new mail is stored: a NOTIFY on PostgreSQL, heard by idle workers.

It lives in the bottom layer because storing mail (`triage.mail.inbound.store`) sends it, while
the workers that LISTEN for it (`triage.worker.wakeup`) sit above the mail wing.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from triage.outage import describe_database_error

log = logging.getLogger(__name__)
CHANNEL = "triage_inbound"
# cast to text: a void result costs a type lookup per call
_NOTIFY = select(cast(func.pg_notify(CHANNEL, ""), Text))


def notify_workers(session: Session) -> None:
    """Wake idle workers (PostgreSQL; elsewhere nothing): a NOTIFY in a transaction of its own.

    Call it after the new mail is committed, not in the storing transaction: PostgreSQL holds a
    cluster-wide lock from a notifying transaction's pre-commit until its commit has been flushed
    to disk, so a NOTIFY inside the INSERT's transaction would queue every webhook's commit behind
    every other's WAL flush. Alone, the NOTIFY changed no data, so its commit does not wait for a
    flush and the lock is held only for a moment.

    Best effort: the mail is already stored, so a failure here (the database dropped just after
    the commit) is logged and swallowed; idle workers still find the mail within WORKER_INTERVAL.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    try:
        session.connection().execute(_NOTIFY)
        session.commit()
    except SQLAlchemyError as exc:
        with contextlib.suppress(SQLAlchemyError):
            session.rollback()
        log.warning("stored mail, but could not wake the workers: %s", describe_database_error(exc))
