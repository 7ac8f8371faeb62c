"""Many rows of one table in one statement: COPY on PostgreSQL, an executemany INSERT elsewhere."""

from __future__ import annotations

from typing import Any, cast

import psycopg
from psycopg.types.json import Json
from sqlalchemy import JSON, Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (the same columns in each, ids included on PostgreSQL) in the session's
    transaction.

    PostgreSQL: `COPY ... FROM STDIN`, one stream for all rows. An executemany INSERT sends and
    acknowledges every row as a statement of its own, which cost the worker about 0.2 ms of CPU per
    email in a batch (a ticket, two messages, an outbox row and the history rows each). The columns'
    Python-side defaults (timestamps, statuses) are filled in per row, as an INSERT would; triggers
    fire as they do for INSERT; a driver error is raised as SQLAlchemy raises one. Anything else:
    one executemany INSERT. Pending ORM changes are flushed first either way, as before any
    statement the session runs.
    """
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    session.flush()
    given = list(rows[0])
    defaults = [
        column
        for column in table.columns
        if column.key not in rows[0] and column.default is not None
    ]
    columns = [table.columns[name] for name in given] + defaults
    json_at = [i for i, column in enumerate(columns) if isinstance(column.type, JSON)]
    names = ", ".join(f'"{column.name}"' for column in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    connection = session.connection()
    driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [row[name] for name in given]
                for column in defaults:
                    default: Any = column.default
                    values.append(default.arg(None) if default.is_callable else default.arg)
                for i in json_at:
                    values[i] = Json(values[i])
                copy.write_row(values)
    except (
        psycopg.Error
    ) as exc:  # as SQLAlchemy raises a driver's error: wrapped, a lost connection dropped
        # SQLAlchemy types the driver's error as its own placeholder class, DBAPIModule.Error
        lost = connection.dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            None,
            exc,
            psycopg.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
