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
from triage.mail import channels
from triage.mail.mail_login import imap_login
from triage.orm import ImapCheckpoint

log = logging.getLogger(__name__)
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
FETCH_LIMIT = 100
LEAVE = object()  # returned by `store_one`: the message stays as it is (not flagged nor moved)
_Item = TypeVar("_Item")


class ImapError(Exception):
    """The IMAP server refused or dropped the conversation."""


def mailbox_key(settings: Settings) -> str:
    """The checkpoint key for the default channel's mailbox."""
    return channels.load(settings).get(channels.DEFAULT).mailbox_key()


def connect(
    sessions: sessionmaker[Session], settings: Settings, channel: channels.Channel
) -> imaplib.IMAP4:
    """Open the channel's IMAP server (TLS unless turned off) and log in: a password, or an OAuth
    2.0 token over XOAUTH2/OAUTHBEARER (LoginError or TokenError with one line when refused)."""
    mailbox, credentials = channel.imap, channel.imap_credentials
    assert mailbox is not None and credentials is not None
    if mailbox.tls:
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            mailbox.host,
            mailbox.port,
            ssl_context=ssl.create_default_context(),
            timeout=30,
        )
    else:
        conn = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=30)
    try:
        token = channels.token_getter(sessions, settings, credentials)
        imap_login(conn, mailbox.host, mailbox.port, credentials, token)
    except BaseException:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.shutdown()
        raise
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
    channel: channels.Channel | None = None,
) -> int:
    """Fetch new mail after the checkpoint, hand each raw message to `store_one`, advance and flag.

    `store_one` must commit the message before returning. The checkpoint moves only after that, so
    a crash repeats at most the message in hand, which storage de-duplicates by Message-ID. When
    `should_stop` turns true (SIGTERM) it stops between two messages; the next poll carries on from
    the checkpoint. `channel` is the default channel unless given.
    """
    channel = channel or channels.load(settings).get(channels.DEFAULT)
    assert channel.imap is not None
    folder = channel.imap
    conn = connect(sessions, settings, channel)
    try:
        _ok(conn.select(quote(folder.folder)), "SELECT")
        key = channel.mailbox_key()
        last_uid = _checkpoint(sessions, key, _uidvalidity(conn, folder))
        done = 0
        for uid in _new_uids(conn, last_uid, limit):
            if should_stop():
                break
            stored = _fetch_and_store(conn, uid, store_one)
            _advance(sessions, key, uid)
            if stored is not LEAVE:
                _mark_processed(conn, folder, uid)
            done += 1
        return done
    except (imaplib.IMAP4.abort, OSError) as exc:  # the server or the network dropped it
        raise ImapError(f"IMAP connection dropped: {exc}") from exc
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def _uidvalidity(conn: imaplib.IMAP4, folder: channels.ImapMailbox) -> int:
    """The selected folder's UIDVALIDITY, from the SELECT response or else from STATUS."""
    validity_line = b" ".join(x for x in conn.response("UIDVALIDITY")[1] if isinstance(x, bytes))
    if validity_line.strip().isdigit():
        return int(validity_line)
    return _status_uidvalidity(conn, folder)


def _new_uids(conn: imaplib.IMAP4, last_uid: int, limit: int) -> list[int]:
    """The first `limit` UIDs after `last_uid`, in order."""
    # no charset argument: imaplib leaves a None argument out of the command anyway
    data = _ok(conn.uid("SEARCH", f"UID {last_uid + 1}:*"), "UID SEARCH")
    return sorted(int(u) for u in (data[0] or b"").split() if int(u) > last_uid)[:limit]


def _fetch_and_store(conn: imaplib.IMAP4, uid: int, store_one: Callable[[bytes], object]) -> object:
    """Fetch one message without marking it seen and hand it to `store_one` (unless it is gone);
    returns what `store_one` did."""
    fetched = _ok(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "UID FETCH")
    raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
    if raw is None:
        log.warning("IMAP UID %s vanished before it was fetched", uid)
        return None
    return store_one(raw)


def _mark_processed(conn: imaplib.IMAP4, folder: channels.ImapMailbox, uid: int) -> None:
    """Move a stored message to the processed folder if one is set, else flag it seen."""
    if folder.processed_folder:
        _ok(conn.uid("MOVE", str(uid), quote(folder.processed_folder)), "UID MOVE")
    else:
        _ok(conn.uid("STORE", str(uid), "+FLAGS", r"(\Seen)"), "UID STORE")


def quote(folder: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _status_uidvalidity(conn: imaplib.IMAP4, folder: channels.ImapMailbox) -> int:
    """The folder's UIDVALIDITY asked for with STATUS (for servers whose SELECT gives none)."""
    data = _ok(conn.status(quote(folder.folder), "(UIDVALIDITY)"), "STATUS")
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
