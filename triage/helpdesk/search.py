"""Global search over every queue: reference, centre address and name, subject and the centre's
emails.

The words live in the `ticket_search` document kept by database triggers (migration 0008): a
tsvector with a GIN index on PostgreSQL, an FTS5 table on SQLite. Both split text into runs of
letters and digits, lower-cased; a query matches tickets holding every one of its words (each as a
word prefix). Results are the same on both: urgent first, then newest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, literal_column, or_, select, text
from sqlalchemy.orm import Session, selectinload

from triage.orm import Ticket, parse_reference

MAX_WORDS = 8
MAX_WORD_CHARS = 64
PAGE_SIZE = 25
MAX_ID = 2**31 - 1  # a reference past what an INTEGER id holds names no ticket
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class SearchResults:
    """One page of matching tickets and how many match in all."""

    query: str
    tickets: list[Ticket]
    total: int
    page: int
    pages: int


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
    return SearchResults(query, list(rows), total, page, pages)
