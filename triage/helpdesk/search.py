"""Global search over every queue: reference, centre address and name, subject and the centre's
emails.

The words live in the `ticket_search` document kept by database triggers (migration 0008): a
tsvector with a GIN index on PostgreSQL, an FTS5 table on SQLite. Both split text into runs of
letters and digits, lower-cased; a query matches tickets holding every one of its words (each as a
word prefix). Results are the same on both: urgent first, then newest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, literal_column, or_, select, text
from sqlalchemy.orm import Session, selectinload

from triage.orm import Message, Ticket, parse_reference
from triage.states import MessageDirection

MAX_WORDS = 8
MAX_WORD_CHARS = 64
PAGE_SIZE = 25
MAX_ID = 2**31 - 1  # a reference past what an INTEGER id holds names no ticket
_WORD = re.compile(r"[^\W_]+")
SNIPPET_CHARS = 180  # about two lines of context around the first match
SCAN_CHARS = 200_000  # a match further into an email than this is not looked for in the snippet

# a snippet: pieces of text in order, each marked True when it is a matched word
Snippet = list[tuple[str, bool]]


@dataclass(frozen=True)
class SearchResults:
    """One page of matching tickets and how many match in all."""

    query: str
    tickets: list[Ticket]
    total: int
    page: int
    pages: int
    snippets: dict[int, Snippet]


def words(query: str) -> list[str]:
    """The query's words as the index sees them: runs of letters and digits, lower-cased, at most
    eight."""
    return [w[:MAX_WORD_CHARS] for w in _WORD.findall(query.lower())][:MAX_WORDS]


def _matching(session: Session, terms: list[str]) -> ColumnElement[bool]:
    if not terms:
        return false()
    ids: Select[Any]
    if session.get_bind().dialect.name == "postgresql":
        tsquery = " & ".join(f"{w}:*" for w in terms)  # letters and digits only: nothing to escape
        ids = (
            select(literal_column("ticket_id"))
            .select_from(text("ticket_search"))
            .where(text("document @@ to_tsquery('simple', :tsquery)").bindparams(tsquery=tsquery))
        )
    else:
        match = " ".join(f'"{w}"*' for w in terms)
        ids = (
            select(literal_column("rowid"))
            .select_from(text("ticket_search"))
            .where(text("ticket_search MATCH :match").bindparams(match=match))
        )
    return Ticket.id.in_(ids)


def search(
    session: Session, query: str, page: int = 1, page_size: int = PAGE_SIZE
) -> SearchResults:
    """Tickets in any queue and any status matching the query (an IMI-000123 reference finds its
    ticket)."""
    query = query.strip()[:200]
    terms = words(query)
    reference = parse_reference(query)
    if reference is None and query.isascii() and query.isdigit() and len(query) <= 9:
        reference = int(query)
    condition = _matching(session, terms)
    if reference is not None and reference <= MAX_ID:
        condition = or_(condition, Ticket.id == reference)
    total = session.scalar(select(func.count()).select_from(Ticket).where(condition)) or 0
    pages = max(1, -(-total // page_size))
    page = min(max(1, page), pages)
    rows = session.scalars(
        select(Ticket)
        .where(condition)
        .options(selectinload(Ticket.queue), selectinload(Ticket.assignee))
        .order_by(Ticket.urgent.desc(), Ticket.created_at.desc(), Ticket.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return SearchResults(query, list(rows), total, page, pages, _snippets(session, rows, terms))


def snippet(text: str, terms: list[str], width: int = SNIPPET_CHARS) -> Snippet | None:
    """The stretch of `text` around the first word starting with one of `terms`, with every such
    word marked; None when no word matches."""
    if not terms:
        return None
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(t) for t in terms) + r")[^\W_]*", re.IGNORECASE
    )
    scanned = text[:SCAN_CHARS]
    first = pattern.search(scanned)
    if first is None:
        return None
    start = max(0, first.start() - width // 3)
    end = min(len(scanned), start + width)
    window = " ".join(scanned[start:end].split())
    pieces: Snippet = [("…", False)] if start > 0 else []
    at = 0
    for match in pattern.finditer(window):
        if match.start() > at:
            pieces.append((window[at : match.start()], False))
        pieces.append((match.group(), True))
        at = match.end()
    pieces.append((window[at:], False))
    if end < len(text):
        pieces.append(("…", False))
    return [piece for piece in pieces if piece[0]]


def _snippets(session: Session, rows: Sequence[Ticket], terms: list[str]) -> dict[int, Snippet]:
    """For each ticket whose centre's words match, the snippet from its first matching email."""
    if not rows or not terms:
        return {}
    messages = session.execute(
        select(Message.ticket_id, Message.body_text)
        .where(
            Message.ticket_id.in_([t.id for t in rows]),
            Message.direction == MessageDirection.INBOUND,
        )
        .order_by(Message.id)
    ).all()
    found: dict[int, Snippet] = {}
    for ticket_id, body in messages:
        if ticket_id not in found and (pieces := snippet(body or "", terms)) is not None:
            found[ticket_id] = pieces
    return found
