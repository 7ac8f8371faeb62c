"""Mail channels: each mailbox (IMAP) or webhook source with its name, credentials, the address we
answer from and a default queue.

The IMAP_*, SMTP_* and SUPPORT_ADDRESS settings make the channel named `default`; CHANNELS_FILE
(TOML, one `[[channel]]` table each) adds more, or replaces `default` by defining one of that name.
Secrets are never in the file: each is named by `<secret>_file` (a path) or `<secret>_env` (an
environment variable).
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from triage.config import ConfigError, Settings
from triage.mail import token_cache
from triage.mail.mail_login import OAUTHBEARER, XOAUTH2, Credentials, TokenGetter
from triage.mail.oauth import (
    GOOGLE_TOKEN_URI,
    MICROSOFT_AUTHORITY,
    AuthMethod,
    OAuthGrant,
    fetch_token,
    read_secret,
)

DEFAULT = "default"
WEBHOOK = "webhook"
IMAP = "imap"


@dataclass(frozen=True)
class ImapMailbox:
    """Where a channel's mail is read: server, folder, and where processed mail goes."""

    host: str
    port: int = 993
    tls: bool = True
    folder: str = "INBOX"
    processed_folder: str = ""


@dataclass(frozen=True)
class SmtpServer:
    """Where a channel's replies are sent."""

    host: str
    port: int = 25
    starttls: bool = False
    timeout: int = 30


@dataclass(frozen=True)
class Channel:
    """One way mail reaches us and our answers leave."""

    name: str
    address: str  # the address we answer from
    from_name: str
    source: str = IMAP  # "imap" or "webhook"
    aliases: tuple[str, ...] = ()  # other addresses of this mailbox we may answer from
    default_queue: str = ""  # queue slug for mail the model cannot place ("" : triage)
    imap: ImapMailbox | None = None
    smtp: SmtpServer | None = None
    imap_credentials: Credentials | None = field(default=None, repr=False)
    smtp_credentials: Credentials | None = field(default=None, repr=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address of this channel, lower-cased, its own first."""
        return tuple(a.lower() for a in (self.address, *self.aliases))

    def mailbox_key(self) -> str:
        """The checkpoint key of its IMAP folder (the same as before channels for `default`)."""
        assert self.imap is not None and self.imap_credentials is not None
        imap, user = self.imap, self.imap_credentials.user
        return f"{user}@{imap.host}:{imap.port}/{imap.folder}"


@dataclass(frozen=True)
class Channels:
    """The configured channels by name; `default` is always present."""

    by_name: Mapping[str, Channel]

    def get(self, name: str | None) -> Channel:
        """The named channel; the default for None or a name no longer configured."""
        return self.by_name.get(name or DEFAULT) or self.by_name[DEFAULT]

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    def polled(self) -> list[Channel]:
        """The channels with an IMAP mailbox to poll."""
        return [c for c in self.by_name.values() if c.imap is not None and c.imap.host]

    def own_addresses(self) -> set[str]:
        """Every address of every channel (mail from them is never answered)."""
        return {a for channel in self.by_name.values() for a in channel.addresses}

    def owner(self, address: str) -> Channel | None:
        """The channel an address of ours belongs to."""
        wanted = address.lower()
        return next((c for c in self.by_name.values() if wanted in c.addresses), None)


def answer_from(channel: Channel, recipients: Iterable[str]) -> str:
    """The address to answer from: the one of this channel the centre wrote to, else its own."""
    mine = channel.addresses
    return next((r.lower() for r in recipients if r.lower() in mine), channel.address)


def load(settings: Settings) -> Channels:
    """The channels: `default` from the settings, then those of CHANNELS_FILE (ConfigError if bad)."""
    path = settings.channels_file
    stamp = path.stat().st_mtime_ns if path is not None and path.exists() else 0
    return _load(settings.support_address, settings.support_name, _default(settings), path, stamp)


@functools.lru_cache(maxsize=8)
def _load(address: str, name: str, default: Channel, path: Path | None, _stamp: int) -> Channels:
    channels = {DEFAULT: default}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"CHANNELS_FILE {path}: {exc}") from None
        for table in document.get("channel", []):
            channel = _channel(table, address, name)
            channels[channel.name] = channel
    owners: dict[str, str] = {}
    for channel in channels.values():
        for own in channel.addresses:
            if owners.setdefault(own, channel.name) != channel.name:
                raise ConfigError(
                    f"CHANNELS_FILE: {own} belongs to channels {owners[own]} and {channel.name}"
                )
    return Channels(channels)


def _default(s: Settings) -> Channel:
    """The channel the single-mailbox settings describe."""
    return Channel(
        name=DEFAULT,
        address=s.support_address,
        from_name=s.support_name,
        source=IMAP if s.imap_host else WEBHOOK,
        imap=ImapMailbox(
            s.imap_host, s.imap_port, s.imap_tls, s.imap_folder, s.imap_processed_folder
        )
        if s.imap_host
        else None,
        smtp=SmtpServer(s.smtp_host, s.smtp_port, s.smtp_starttls, s.smtp_timeout)
        if s.smtp_host
        else None,
        imap_credentials=Credentials(s.imap_user, s.imap_password),
        smtp_credentials=Credentials(s.smtp_user, s.smtp_password) if s.smtp_user else None,
    )


def _channel(table: dict[str, Any], address: str, from_name: str) -> Channel:
    """One `[[channel]]` table as a Channel; ConfigError naming the channel when it is wrong."""
    name = str(table.get("name", "")).strip()
    if not name or len(name) > 64:
        raise ConfigError("CHANNELS_FILE: every [[channel]] needs a name (up to 64 characters)")
    try:
        own = str(table.get("address") or address)
        auth = table.get("auth", {})
        imap_table, smtp_table = table.get("imap"), table.get("smtp")
        source = str(table.get("source", IMAP if imap_table else WEBHOOK))
        if source not in (IMAP, WEBHOOK):
            raise ValueError(f"source must be {IMAP} or {WEBHOOK}")
        imap = ImapMailbox(**_server(imap_table)) if imap_table else None
        smtp = SmtpServer(**_server(smtp_table)) if smtp_table else None
        imap_user = str((imap_table or {}).get("user", "") or auth.get("user") or own)
        return Channel(
            name=name,
            address=own,
            from_name=str(table.get("from_name") or from_name),
            source=source,
            aliases=tuple(str(a) for a in table.get("aliases", [])),
            default_queue=str(table.get("default_queue", "")),
            imap=imap,
            smtp=smtp,
            imap_credentials=_credentials(auth, imap_user) if imap else None,
            smtp_credentials=_credentials(auth, str(auth.get("user") or imap_user))
            if smtp
            else None,
        )
    except (TypeError, ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"CHANNELS_FILE: channel {name}: {exc}") from None


def _credentials(auth: dict[str, Any], user: str) -> Credentials:
    """The credentials an `[channel.auth]` table describes, their secrets read now."""
    method = AuthMethod(str(auth.get("method", AuthMethod.PASSWORD)))
    mechanism = str(auth.get("sasl", XOAUTH2)).upper()
    if mechanism not in (XOAUTH2, OAUTHBEARER):
        raise ValueError(f"sasl must be {XOAUTH2} or {OAUTHBEARER}")
    if method == AuthMethod.PASSWORD:
        return Credentials(user, _secret(auth, "password"))
    grant = OAuthGrant(
        method=method,
        mailbox=user,
        client_id=str(auth.get("client_id", "")),
        tenant=str(auth.get("tenant", "")),
        authority=str(auth.get("authority", MICROSOFT_AUTHORITY)),
        scope=str(auth.get("scope", "")),
        token_uri=str(auth.get("token_uri", GOOGLE_TOKEN_URI)),
    )
    if method == AuthMethod.MICROSOFT:
        if not grant.tenant or not grant.client_id:
            raise ValueError("microsoft needs tenant and client_id")
        if "certificate_file" in auth:
            grant = replace(
                grant,
                certificate_key=read_secret(auth["certificate_file"]),
                certificate_thumbprint=str(auth.get("certificate_thumbprint", "")),
            )
        else:
            grant = replace(grant, client_secret=_secret(auth, "client_secret"))
    elif method == AuthMethod.GOOGLE_SERVICE_ACCOUNT:
        info = json.loads(read_secret(auth["key_file"]))
        grant = replace(grant, service_account_info=info)
    else:
        grant = replace(
            grant,
            client_secret=_secret(auth, "client_secret"),
            refresh_token=_secret(auth, "refresh_token"),
        )
    return Credentials(user, grant=grant, mechanism=mechanism)


def _server(table: dict[str, Any]) -> dict[str, Any]:
    """A server table's settings without the login user (that belongs to the credentials)."""
    return {k: v for k, v in table.items() if k != "user"}


def _secret(auth: dict[str, Any], name: str, environment: Mapping[str, str] = os.environ) -> str:
    """A secret named by `<name>_file` or `<name>_env` (never written in the file itself).

    The variable's name is the operator's, given in CHANNELS_FILE (docs/mail-channels.md), so it
    cannot be listed in configuration.md."""
    if f"{name}_file" in auth:
        return read_secret(auth[f"{name}_file"])
    if f"{name}_env" in auth:
        value = environment.get(str(auth[f"{name}_env"]), "")
        if not value:
            raise ValueError(f"environment variable {auth[f'{name}_env']} ({name}) is not set")
        return value
    if name in auth:
        raise ValueError(f"give {name}_file or {name}_env, not the {name} itself")
    raise ValueError(f"{name}_file or {name}_env is missing")


def token_getter(
    sessions: sessionmaker[Session], settings: Settings, credentials: Credentials
) -> TokenGetter:
    """Tokens for these credentials from the shared cache; `renew` drops a refused one first."""
    grant = credentials.grant

    def get(renew: bool) -> str:
        if grant is None:
            return ""
        key = grant.cache_key()
        if renew:
            token_cache.forget(sessions, key)
        token = token_cache.cached_token(
            sessions, settings.secret_key, key, lambda: fetch_token(grant)
        )
        return token.value

    return get


def sender(settings: Settings, channel_name: str | None, reply_from: str | None) -> tuple[str, str]:
    """The name and address a ticket's mail is from: the address the centre wrote to when it is
    still one of its channel's, else the channel's own."""
    channel = load(settings).get(channel_name)
    if reply_from and reply_from.lower() in channel.addresses:
        return channel.from_name, reply_from
    return channel.from_name, channel.address
