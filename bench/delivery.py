"""Outbox delivery to a slow SMTP relay: OUTBOX_CONNECTIONS parallel connections against one
connection (the baseline), both measured in this run against a real aiosmtpd server that takes a
fixed time per message. Every reply must arrive exactly once; a baseline with any error aborts.

Quick: 0.25 s a message, 40 messages on one connection, 160 on the default connections. Full
(BENCH_FULL=1): 1.5 s a message (a slow relay), 30 and 240. SQLite, or PostgreSQL with
BENCH_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import full_profile, migrated_engine
from triage import create_app
from triage.catalogue import TRIAGE_QUEUE
from triage.config import Settings
from triage.mail.delivery import deliver_due
from triage.mail.outbox import outbound_message
from triage.orm import Message, OutboxItem, Queue, Ticket
from triage.states import MessageKind


class SlowRelay:
    """aiosmtpd handler: waits `delay` seconds over each message, then accepts it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.message_ids: list[str] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                self.message_ids.append(line.split(b":", 1)[1].strip().decode())
                break
        return "250 OK"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _queue_replies(app: Any, count: int) -> list[str]:
    """`count` tickets, each with one reply waiting in the outbox; their Message-IDs."""
    settings: Settings = app.extensions["triage.settings"]
    with app.extensions["triage.sessions"]() as session:
        queue = session.scalars(select(Queue).where(Queue.slug == TRIAGE_QUEUE)).one()
        ids = []
        for n in range(count):
            address = f"exams{n}@centre{n}.example"
            ticket = Ticket(
                centre_email=address,
                centre_name="Exams Officer",
                centre_domain=f"centre{n}.example",
                subject=f"Results {n}",
                status="open",
                queue=queue,
                action="triage",
                urgent=False,
            )
            session.add(ticket)
            session.flush()
            values = outbound_message(
                settings,
                ticket.id,
                address,
                kind=MessageKind.ACK,
                subject=f"Re: Results {n}",
                body="We have your email and will answer within one working day.",
                reply_to=None,
                auto_submitted="auto-replied",
            )
            message = Message(**values)
            session.add(message)
            session.add(OutboxItem(message=message, ticket_id=ticket.id, recipient=address))
            ids.append(values["message_id"])
        session.commit()
    return ids


def _run(database_url: str, scratch: Path, connections: int, count: int, delay: float) -> float:
    """Deliver `count` replies over `connections`; messages a second (exits on any error)."""
    from aiosmtpd.controller import Controller

    relay = SlowRelay(delay)
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": scratch,
            "SECRET_KEY": "bench",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": port,
            "OUTBOX_CONNECTIONS": connections,
        }
    )
    try:
        expected = _queue_replies(app, count)
        started = time.perf_counter()
        while deliver_due(
            app.extensions["triage.sessions"], app.extensions["triage.settings"], "bench"
        ):
            pass
        elapsed = time.perf_counter() - started
        with app.extensions["triage.sessions"]() as session:
            statuses = Counter(session.scalars(select(OutboxItem.status)))
    finally:
        app.extensions["triage.engine"].dispose()
        controller.stop()
    received = Counter(relay.message_ids)
    if statuses != Counter({"sent": count}) or received != Counter(expected):
        doubled = sum(1 for n in received.values() if n > 1)
        raise SystemExit(
            f"{connections} connection(s): rows {dict(statuses)}, {len(received)} of {count} "
            f"received, {doubled} twice: aborting, its figures mean nothing"
        )
    return count / elapsed


def _fresh_database(scratch: Path, name: str) -> str:
    """A migrated database: SQLite in `scratch`, or the emptied BENCH_DATABASE_URL."""
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{scratch / f'{name}.db'}"
    migrated_engine(url).dispose()
    return url


def main() -> None:
    """One connection against the default number, on a relay of fixed speed."""
    delay, baseline_count, count = (1.5, 30, 240) if full_profile() else (0.25, 40, 160)
    connections = Settings().outbox_connections
    print(
        f"== delivery: a relay taking {delay} s a message; 1 connection (baseline) against "
        f"{connections} (OUTBOX_CONNECTIONS default), one worker process =="
    )
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        baseline = _run(_fresh_database(scratch, "one"), scratch, 1, baseline_count, delay)
        print(
            f"  {'1 connection (baseline)':28} {baseline:7.2f} messages/s  ({baseline_count} sent, 0 errors)"
        )
        parallel = _run(_fresh_database(scratch, "many"), scratch, connections, count, delay)
        print(
            f"  {f'{connections} connections':28} {parallel:7.2f} messages/s  ({count} sent, 0 errors)"
        )
    burst = 500
    print(
        f"  ratio {parallel / baseline:.2f} against the baseline; a burst of {burst} replies takes "
        f"{burst / parallel / 60:.1f} min with one worker process ({burst / baseline / 60:.1f} min "
        f"on one connection), half that with two"
    )
