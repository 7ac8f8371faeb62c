"""New rows as plain column values: numbered in one query, inserted in one statement per table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from triage.bulk_insert import insert_rows
from triage.orm import Attachment, Message, OutboxItem, Ticket

Row = dict[str, Any]
RowKind = type[Ticket] | type[Message] | type[Attachment] | type[OutboxItem]
# the tables whose new rows a batch numbers itself, parents first
NUMBERED: tuple[RowKind, ...] = (Ticket, Message, Attachment, OutboxItem)


def insert_tables(session: Session, *tables: tuple[RowKind, list[Row]]) -> None:
    """Insert numbered rows, one statement per table, in the order given (parents first)."""
    for kind, rows in tables:
        insert_rows(session, kind.__table__, rows)


def number_new(session: Session, rows: dict[RowKind, list[Row]]) -> None:
    """Give new rows their ids, and the session's new ORM objects of the same tables (a follow-up's
    message, say), in the order they were added, with one query.

    PostgreSQL: from the tables' own sequences. SQLite: the ids after each table's highest, which is
    what SQLite itself would give (no AUTOINCREMENT); the batch holds the one write lock, so no
    other writer can take them meanwhile.
    """
    waiting = _waiting(session, rows)
    kinds = [kind for kind in NUMBERED if waiting[kind]]
    if not kinds:
        return
    ids: list[Sequence[int]]
    if session.get_bind().dialect.name == "postgresql":
        ids = _sequence_ids(session, kinds, waiting)
    else:
        ids = _ids_after_highest(session, kinds, waiting)
    for kind, given in zip(kinds, ids, strict=True):
        for item, new_id in zip(waiting[kind], given, strict=True):
            if isinstance(item, dict):
                item["id"] = new_id
            else:
                item.id = new_id


def _waiting(session: Session, rows: dict[RowKind, list[Row]]) -> dict[RowKind, list[Any]]:
    """Per table, the session's new objects without an id, then the given rows."""
    waiting: dict[RowKind, list[Any]] = {kind: [] for kind in NUMBERED}
    for obj in session.new:
        bucket = waiting.get(type(obj))
        if bucket is not None and obj.id is None:
            bucket.append(obj)
    for kind, values in rows.items():
        waiting[kind].extend(values)
    return waiting


def _sequence_ids(
    session: Session, kinds: list[RowKind], waiting: dict[RowKind, list[Any]]
) -> list[Sequence[int]]:
    """PostgreSQL: as many ids from each table's sequence as it has rows waiting, in one query."""
    columns = ", ".join(
        f"ARRAY(SELECT nextval(pg_get_serial_sequence('{kind.__tablename__}', 'id')) "
        f"FROM generate_series(1, :n{i}) ORDER BY 1)"
        for i, kind in enumerate(kinds)
    )
    counts = {f"n{i}": len(waiting[kind]) for i, kind in enumerate(kinds)}
    # through the connection: no autoflush, so nothing is written before the rows have ids
    return list(session.connection().execute(text(f"SELECT {columns}"), counts).one())


def _ids_after_highest(
    session: Session, kinds: list[RowKind], waiting: dict[RowKind, list[Any]]
) -> list[Sequence[int]]:
    """SQLite: the ids after each table's highest id, in one query."""
    columns = ", ".join(
        f"(SELECT coalesce(max(id), 0) FROM {kind.__tablename__})" for kind in kinds
    )
    highest = session.connection().execute(text(f"SELECT {columns}")).one()
    return [
        range(top + 1, top + 1 + len(waiting[kind]))
        for kind, top in zip(kinds, highest, strict=True)
    ]
