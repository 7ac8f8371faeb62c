"""A delivery round: claim due outbox rows, send them over a few SMTP connections at once, record
each outcome as it happens.

While a round runs, a heartbeat renews the lease of every row the process holds, so no other
worker takes back a row that a live worker is sending, however slow the server; a worker that dies
stops renewing and its rows are taken back once the lease runs out. When the database drops during
a round, the process remembers what it sent and what it did not attempt, stops sending, and settles
both (records the sends, hands the rest back) as soon as the database answers again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.database import statement_session
from triage.mail.channel_delivery import ChannelTransport
from triage.mail.outbox import (
    CLAIM_BATCH,
    claim,
    hold_for_send,
    record,
    release_held,
    renew_leases,
)
from triage.mail.transport import DeliveryOutcome
from triage.orm import Message, OutboxItem
from triage.outage import Outage, describe_database_error, watch
from triage.states import OutboxStatus

log = logging.getLogger(__name__)

CLAIM_PER_CONNECTION = 2  # rows in hand per SMTP connection: the one being sent and the next
SETTLE_TRIES = 3  # after losing the database, tries to settle before the round ends
SETTLE_PAUSE_SECONDS = 0.5


@dataclass
class Unsettled:
    """What a process owes the database after losing it mid-round (kept across rounds)."""

    outcomes: dict[int, DeliveryOutcome] = field(default_factory=dict)  # attempted, not recorded
    unsent: set[int] = field(default_factory=set)  # claimed, never attempted
    # the database failed since the last settling: a claim's answer may have been lost with it
    lost: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.unsent or self.lost)


_UNSETTLED: dict[str, Unsettled] = {}  # by worker id


@dataclass(frozen=True)
class Claimed:
    """One claimed row, ready to send."""

    item_id: int
    raw: bytes
    recipient: str
    name: str  # the file name without SMTP
    sender: str  # the From address: names the channel it goes out through


class Round:
    """The shared state of one delivery round."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        worker_id: str,
        should_stop: Callable[[], bool],
    ) -> None:
        self.sessions, self.settings, self.worker_id = sessions, settings, worker_id
        self.should_stop = should_stop
        self.unsettled = _UNSETTLED.setdefault(worker_id, Unsettled())
        self.database = database_watch(settings)
        self.transport = watch(
            "mail transport", settings.outage_warn_seconds, settings.outage_remind_seconds
        )
        self.lost = threading.Event()  # the database failed: stop sending, settle later
        self.counts = {"sent": 0, "retry": 0, "failed": 0}
        self._counts_lock = threading.Lock()

    def stopped(self) -> bool:
        """Whether no more messages are to be sent this round."""
        return self.lost.is_set() or self.should_stop()

    def database_failed(self, exc: SQLAlchemyError) -> None:
        """Note a lost database: stop sending; what is in hand is settled later."""
        self.lost.set()
        with self.unsettled.lock:
            self.unsettled.lost = True
        self.database.failed(describe_database_error(exc))

    def count(self, outcome: DeliveryOutcome) -> None:
        """Tally an outcome for the round's summary."""
        key = "sent" if outcome.sent else "failed" if outcome.permanent else "retry"
        with self._counts_lock:
            self.counts[key] += 1


def database_watch(settings: Settings) -> Outage:
    """This process's watch on the database."""
    return watch("database", settings.outage_warn_seconds, settings.outage_remind_seconds)


def deliver_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    worker_id: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Claim and deliver due outbox rows; returns how many were handled (sent or failed for now).

    When `should_stop` turns true (SIGTERM), each connection finishes the message in hand and the
    rest of the claim is handed back, so another worker sends it at once instead of after the lease.
    Database failures do not escape: they are logged by the database's outage watch.
    """
    state = Round(sessions, settings, worker_id, should_stop)
    if state.unsettled and not settle(state):
        return 0
    started = time.monotonic()
    with _heartbeat(state):
        handled = _claim_and_send(state)
    if state.lost.is_set():
        for _ in range(SETTLE_TRIES):  # a dropped connection is often replaced at once
            time.sleep(SETTLE_PAUSE_SECONDS)
            if settle(state):
                break
    elif state.unsettled:  # stopping: hand back what was not attempted
        settle(state)
    if handled:
        counts = state.counts
        log.info(
            "outbox: %d sent, %d to retry, %d failed in %.1f s",
            counts["sent"],
            counts["retry"],
            counts["failed"],
            time.monotonic() - started,
        )
    return handled


def settle(state: Round) -> bool:
    """Record the outcomes a lost database missed and hand back unattempted rows; True when done."""
    owed = state.unsettled
    with owed.lock:
        outcomes, unsent = dict(owed.outcomes), set(owed.unsent)
    try:
        with statement_session(state.sessions) as recorder:
            for item_id, outcome in outcomes.items():
                record(state.sessions, recorder, state.settings, item_id, state.worker_id, outcome)
                with owed.lock:
                    owed.outcomes.pop(item_id, None)
        # no thread of this process is sending now: every row it still holds was claimed and not
        # attempted, including rows of a claim whose answer the lost database never gave
        release_held(state.sessions, state.worker_id, "claimed, not attempted this round")
        with owed.lock:
            owed.unsent -= unsent
            owed.lost = False
    except SQLAlchemyError as exc:
        state.database.failed(describe_database_error(exc))
        return False
    if outcomes:
        log.warning(
            "outbox: recorded %d outcomes after the database came back (%d sent)",
            len(outcomes),
            sum(outcome.sent for outcome in outcomes.values()),
        )
    state.database.succeeded()
    return True


def _claim_and_send(state: Round) -> int:
    """Claim and send until nothing is due, the database fails, or a stop; returns how many
    messages were attempted.

    Without SMTP (files) one thread takes batches of CLAIM_BATCH. Over SMTP, OUTBOX_CONNECTIONS
    threads each send over a connection of their own, and rows are claimed as room frees up, at
    most CLAIM_PER_CONNECTION per connection in hand, so a slow server holds few rows back from
    other workers.
    """
    if not state.settings.smtp_host:
        sender = _Sender(state)
        try:
            handled = 0
            while not state.stopped() and (batch := _claim_batch(state, CLAIM_BATCH)):
                handled += sum(sender.handle(item) for item in batch)
            return handled
        finally:
            sender.close()
    connections = max(1, state.settings.outbox_connections)
    window = connections * CLAIM_PER_CONNECTION
    with _Senders(state, connections) as senders:
        while not state.stopped():
            room = senders.wait_for_room(window, connections)
            batch = _claim_batch(state, room) if room else []
            if batch:
                senders.put_all(batch)
            elif not senders.wait_until_idle():  # nothing due: done once nothing is in hand
                break
        senders.wait_until_idle()
        return senders.attempted


def _claim_batch(state: Round, limit: int) -> list[Claimed]:
    """Claim up to `limit` due rows and read them; none when the database fails."""
    if state.stopped():
        return []
    try:
        ids = claim(
            state.sessions,
            state.worker_id,
            limit,
            max_attempts=state.settings.outbox_max_attempts,
            lease=timedelta(seconds=state.settings.outbox_lease_seconds),
        )
        batch = _read_claimed(state.sessions, ids, state.worker_id) if ids else []
    except SQLAlchemyError as exc:
        state.database_failed(exc)
        return []
    state.database.succeeded()
    return batch


def _read_claimed(sessions: sessionmaker[Session], ids: list[int], worker_id: str) -> list[Claimed]:
    """The claimed rows' bytes and recipients, in claim order."""
    with sessions() as session:
        found = {
            item_id: Claimed(
                item_id, raw or b"", recipient, f"{item_id:08d}-{ticket_id}", sender or ""
            )
            for item_id, raw, recipient, ticket_id, sender in session.execute(
                select(
                    OutboxItem.id,
                    Message.raw,
                    OutboxItem.recipient,
                    OutboxItem.ticket_id,
                    Message.from_address,
                )
                .join(Message, Message.id == OutboxItem.message_id)
                .where(
                    OutboxItem.id.in_(ids),
                    OutboxItem.status == OutboxStatus.SENDING,
                    OutboxItem.claimed_by == worker_id,
                )
            )
        }
    return [found[item_id] for item_id in ids if item_id in found]


class _Sender:
    """One SMTP connection and one recording connection, used by one thread."""

    def __init__(self, state: Round) -> None:
        self.state = state
        self.transport = ChannelTransport(state.sessions, state.settings)
        self._recorder: contextlib.ExitStack | None = None
        self._session: Session | None = None

    def handle(self, item: Claimed) -> bool:
        """Send one claimed row and record the outcome; False when it was not attempted."""
        state = self.state
        if state.stopped():
            with state.unsettled.lock:
                state.unsettled.unsent.add(item.item_id)
            return False
        try:
            if not hold_for_send(self._recorder_session(), item.item_id, state.worker_id):
                log.warning("outbox %s: no longer this worker's; not sent", item.item_id)
                return False
        except SQLAlchemyError as exc:
            self.close_recorder()
            with state.unsettled.lock:
                state.unsettled.unsent.add(item.item_id)
            state.database_failed(exc)
            return False
        outcome = self.transport.send(
            item.sender or state.settings.support_address, item.recipient, item.raw, item.name
        )
        state.count(outcome)
        if outcome.sent or outcome.permanent:
            state.transport.succeeded()
        else:
            state.transport.failed(outcome.error)
        try:
            record(
                state.sessions,
                self._recorder_session(),
                state.settings,
                item.item_id,
                state.worker_id,
                outcome,
            )
        except SQLAlchemyError as exc:
            self.close_recorder()
            with state.unsettled.lock:
                state.unsettled.outcomes[item.item_id] = outcome
            state.database_failed(exc)
        return True

    def _recorder_session(self) -> Session:
        if self._session is None:
            self._recorder = contextlib.ExitStack()
            self._session = self._recorder.enter_context(statement_session(self.state.sessions))
        return self._session

    def close_recorder(self) -> None:
        """Give the recording connection back (a broken one is discarded by the pool)."""
        stack, self._recorder, self._session = self._recorder, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()

    def close(self) -> None:
        """End the SMTP session and the recording connection."""
        self.transport.close()
        self.close_recorder()


class _Senders:
    """`connections` senders, each in a thread of its own, fed from one queue."""

    def __init__(self, state: Round, connections: int) -> None:
        self.state = state
        self.senders = [_Sender(state) for _ in range(connections)]
        self._queue: queue.Queue[Claimed | None] = queue.Queue()
        self._changed = threading.Condition()
        self.in_hand = 0  # claimed rows queued or being sent
        self.attempted = 0
        self._threads = [
            threading.Thread(target=self._run, args=(sender,), name=f"outbox-{n}", daemon=True)
            for n, sender in enumerate(self.senders)
        ]

    def __enter__(self) -> _Senders:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        for sender in self.senders:
            sender.close()

    def put_all(self, batch: list[Claimed]) -> None:
        """Queue claimed rows for the senders."""
        with self._changed:
            self.in_hand += len(batch)
        for item in batch:
            self._queue.put(item)

    def wait_for_room(self, window: int, at_least: int) -> int:
        """Wait until `at_least` more rows fit in a `window` (or a stop); how many more fit."""
        with self._changed:
            while self.in_hand > window - at_least and not self.state.stopped():
                self._changed.wait(timeout=1.0)
            return 0 if self.state.stopped() else window - self.in_hand

    def wait_until_idle(self) -> bool:
        """Wait until every row in hand is done; True if any was in hand."""
        with self._changed:
            busy = self.in_hand > 0
            while self.in_hand:
                self._changed.wait(timeout=1.0)
            return busy

    def _run(self, sender: _Sender) -> None:
        while (item := self._queue.get()) is not None:
            attempted = False
            try:
                attempted = sender.handle(item)
            except Exception:  # a bug, not a failure of the database or the server
                log.exception("outbox: a sender failed; its row is handed back")
                with self.state.unsettled.lock:
                    self.state.unsettled.unsent.add(item.item_id)
            with self._changed:
                self.in_hand -= 1
                self.attempted += attempted
                self._changed.notify_all()


@contextlib.contextmanager
def _heartbeat(state: Round) -> Iterator[None]:
    """Renew this worker's leases every third of the lease while the round runs."""
    done = threading.Event()
    every = max(0.05, state.settings.outbox_lease_seconds / 3)

    def beat() -> None:
        while not done.wait(every):
            try:
                renew_leases(state.sessions, state.worker_id)
            except SQLAlchemyError as exc:
                state.database.failed(describe_database_error(exc))

    thread = threading.Thread(target=beat, name="outbox-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
