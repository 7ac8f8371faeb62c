"""Poll an IMAP folder: fetch without marking seen, store and commit, then flag or move.

A UID checkpoint per mailbox says where the next poll starts.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from triage.config import Settings
from triage.orm import ImapCheckpoint

log = logging.getLogger(__name__)
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
FETCH_LIMIT = 100
_Item = TypeVar("_Item")


class ImapError(Exception):
    """The IMAP server refused or dropped the conversation."""


def mailbox_key(settings: Settings) -> str:
    """The checkpoint key for the configured mailbox."""
    return f"{settings.imap_user}@{settings.imap_host}:{settings.imap_port}/{settings.imap_folder}"


def connect(settings: Settings) -> imaplib.IMAP4:
    """Open and log in to the configured IMAP server (TLS unless IMAP_TLS=false)."""
    if settings.imap_tls:
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            settings.imap_host,
            settings.imap_port,
            ssl_context=ssl.create_default_context(),
            timeout=30,
        )
    else:
        conn = imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=30)
    conn.login(settings.imap_user, settings.imap_password)
    return conn


def _ok(result: tuple[str, list[_Item]], what: str) -> list[_Item]:
    """The data of a command's reply; ImapError when the server did not answer OK."""
    status, data = result
    if status != "OK":
        raise ImapError(f"IMAP {what} failed: {data!r}")
    return data


def poll(
    sessions: sessionmaker[Session],
    settings: Settings,
    store_one: Callable[[bytes], object],
    limit: int = FETCH_LIMIT,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Fetch new mail after the checkpoint, hand each raw message to `store_one`, advance and flag.

    `store_one` must commit the message before returning. The checkpoint moves only after that, so
    a crash repeats at most the message in hand, which storage de-duplicates by Message-ID. When
    `should_stop` turns true (SIGTERM) it stops between two messages; the next poll carries on from
    the checkpoint.
    """
    conn = connect(settings)
    try:
        _ok(conn.select(_quote(settings.imap_folder)), "SELECT")
        key = mailbox_key(settings)
        last_uid = _checkpoint(sessions, key, _uidvalidity(conn, settings))
        done = 0
        for uid in _new_uids(conn, last_uid, limit):
            if should_stop():
                break
            _fetch_and_store(conn, uid, store_one)
            _advance(sessions, key, uid)
            _mark_processed(conn, settings, uid)
            done += 1
        return done
    except imaplib.IMAP4.abort as exc:  # the server or the network dropped the connection
        raise ImapError(f"IMAP connection dropped: {exc}") from exc
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def _uidvalidity(conn: imaplib.IMAP4, settings: Settings) -> int:
    """The selected folder's UIDVALIDITY, from the SELECT response or else from STATUS."""
    validity_line = b" ".join(x for x in conn.response("UIDVALIDITY")[1] if isinstance(x, bytes))
    if validity_line.strip().isdigit():
        return int(validity_line)
    return _status_uidvalidity(conn, settings)


def _new_uids(conn: imaplib.IMAP4, last_uid: int, limit: int) -> list[int]:
    """The first `limit` UIDs after `last_uid`, in order."""
    # no charset argument: imaplib leaves a None argument out of the command anyway
    data = _ok(conn.uid("SEARCH", f"UID {last_uid + 1}:*"), "UID SEARCH")
    return sorted(int(u) for u in (data[0] or b"").split() if int(u) > last_uid)[:limit]


def _fetch_and_store(conn: imaplib.IMAP4, uid: int, store_one: Callable[[bytes], object]) -> None:
    """Fetch one message without marking it seen and hand it to `store_one` (unless it is gone)."""
    fetched = _ok(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "UID FETCH")
    raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
    if raw is None:
        log.warning("IMAP UID %s vanished before it was fetched", uid)
    else:
        store_one(raw)


def _mark_processed(conn: imaplib.IMAP4, settings: Settings, uid: int) -> None:
    """Move a stored message to the processed folder if one is set, else flag it seen."""
    if settings.imap_processed_folder:
        _ok(conn.uid("MOVE", str(uid), _quote(settings.imap_processed_folder)), "UID MOVE")
    else:
        _ok(conn.uid("STORE", str(uid), "+FLAGS", r"(\Seen)"), "UID STORE")


def _quote(folder: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _status_uidvalidity(conn: imaplib.IMAP4, settings: Settings) -> int:
    """The folder's UIDVALIDITY asked for with STATUS (for servers whose SELECT gives none)."""
    data = _ok(conn.status(_quote(settings.imap_folder), "(UIDVALIDITY)"), "STATUS")
    match = _UIDVALIDITY.search(data[0] if isinstance(data[0], bytes) else b"")
    if not match:
        raise ImapError("server did not report UIDVALIDITY")
    return int(match.group(1))


def _checkpoint(sessions: sessionmaker[Session], key: str, uidvalidity: int) -> int:
    """The last stored UID for this mailbox; a changed UIDVALIDITY starts again from the start."""
    with sessions() as session, session.begin():
        row = session.scalars(
            select(ImapCheckpoint).where(ImapCheckpoint.mailbox == key)
        ).one_or_none()
        if row is None:
            session.add(ImapCheckpoint(mailbox=key, uidvalidity=uidvalidity, last_uid=0))
            return 0
        if row.uidvalidity != uidvalidity:
            log.warning(
                "UIDVALIDITY of %s changed (%s -> %s): rescanning; "
                "duplicates are skipped by Message-ID",
                key,
                row.uidvalidity,
                uidvalidity,
            )
            row.uidvalidity, row.last_uid = uidvalidity, 0
        return row.last_uid


def _advance(sessions: sessionmaker[Session], key: str, uid: int) -> None:
    """Move the mailbox's checkpoint up to `uid` (never down)."""
    with sessions() as session, session.begin():
        row = session.scalars(select(ImapCheckpoint).where(ImapCheckpoint.mailbox == key)).one()
        row.last_uid = max(row.last_uid, uid)
