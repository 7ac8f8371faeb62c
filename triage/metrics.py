"""Prometheus metrics: business figures read from the database at scrape time, plus request latency.

Under gunicorn (triage.web.gunicorn_conf) PROMETHEUS_MULTIPROC_DIR is set, every worker writes its
latency observations there, and a scrape answered by any worker adds them all up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, sessionmaker

from triage.mail.inbound import MAX_PROCESS_ATTEMPTS
from triage.orm import InboundEmail, MailChannel, OutboxItem, Ticket
from triage.states import InboundStatus

REQUEST_LATENCY = Histogram(
    "triage_http_request_seconds",
    "HTTP request latency by endpoint",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class DatabaseCollector:
    """Counts that every process sees alike, because they come from the shared database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (called by the registry on each scrape)."""
        with self.sessions() as session:
            received = CounterMetricFamily(
                "triage_emails_received", "Inbound emails stored, by source", labels=["source"]
            )
            for source, n in session.execute(
                select(InboundEmail.source, func.count()).group_by(InboundEmail.source)
            ):
                received.add_metric([source], n)
            yield received
            decisions = CounterMetricFamily(
                "triage_decisions",
                "New tickets by action and predicted category",
                labels=["action", "category"],
            )
            query = select(Ticket.action, Ticket.predicted_category, func.count()).group_by(
                Ticket.action, Ticket.predicted_category
            )
            for action, category, n in session.execute(query):
                decisions.add_metric([action or "none", category or "unclassified"], n)
            yield decisions
            stored = GaugeMetricFamily(
                "triage_inbound",
                "Stored inbound mail by state (gave_up: the worker stopped "
                "retrying; see Admin > Inbound problems)",
                labels=["state"],
            )
            gave_up = (InboundEmail.status == InboundStatus.PENDING) & (
                InboundEmail.attempts >= MAX_PROCESS_ATTEMPTS
            )
            state = case((gave_up, "gave_up"), else_=InboundEmail.status)
            for name, n in session.execute(select(state, func.count()).group_by(state)):
                stored.add_metric([name], n)
            yield stored
            outbox = GaugeMetricFamily("triage_outbox", "Outbox rows by status", labels=["status"])
            for status, n in session.execute(
                select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
            ):
                outbox.add_metric([status], n)
            yield outbox
            failing = GaugeMetricFamily(
                "triage_channel_failing",
                "1 while a mail channel's polls or sends fail (since its last success)",
                labels=["channel"],
            )
            last_success = GaugeMetricFamily(
                "triage_channel_last_success_timestamp_seconds",
                "When a mail channel last polled, posted or sent successfully",
                labels=["channel"],
            )
            for row in session.scalars(select(MailChannel)):
                failing.add_metric([row.name], 1 if row.failing_since else 0)
                if row.last_success_at:
                    last_success.add_metric([row.name], row.last_success_at.timestamp())
            yield failing
            yield last_success


def render(sessions: sessionmaker[Session]) -> bytes:
    """The exposition text: database figures plus request latency (of all workers, in multi-process
    mode)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(sessions))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_LATENCY)
    return generate_latest(registry)
