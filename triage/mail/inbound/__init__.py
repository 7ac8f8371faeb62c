"""The inbound path shared by the webhook, the JSON API, IMAP and file ingest.

Raw mail is committed first, so nothing is lost (`store`; the webhook does only that: `accept`).
Workers then claim pending mail in batches, parse, clean and classify each batch together
(`processing`), and in one transaction a `BatchWriter` (`writer`) threads each email onto an
existing ticket (`threads`, `follow_up`) or opens a new one, as decided by a pure function
(`policy`) within the reply caps (`caps`), writing the new tickets, their history and replies
together (`new_tickets`, `rows`). The JSON API, IMAP and file ingest store and process one email at
once (`receive`), on the same path.
"""

from triage.mail.inbound.policy import NO_ACTION_NEEDED
from triage.mail.inbound.processing import (
    BATCH_SIZE,
    BatchOutcome,
    InboundContext,
    process_batch,
    process_pending,
    receive,
)
from triage.mail.inbound.store import (
    MAX_PROCESS_ATTEMPTS,
    Received,
    accept,
    problem_mail,
    retry_processing,
)

__all__ = [
    "BATCH_SIZE",
    "MAX_PROCESS_ATTEMPTS",
    "NO_ACTION_NEEDED",
    "BatchOutcome",
    "InboundContext",
    "Received",
    "accept",
    "problem_mail",
    "process_batch",
    "process_pending",
    "receive",
    "retry_processing",
]
