"""Who an automatic answer may go to: Reply-To only within the sender's own organisation, DMARC,
domains."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address

from triage.mail.domains import registrable_domain
from triage.mail.parse import ParsedEmail

_COMMENT = re.compile(r"\([^()]*\)")
_DMARC = re.compile(r"(?:^|;)\s*dmarc\s*=\s*([a-z]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Recipient:
    """Where answers to an email go, the name to greet, and why Reply-To was not used (if it was
    not)."""

    address: str
    name: str
    note: str = ""


def choose_recipient(email: ParsedEmail) -> Recipient:
    """Reply-To when it is in the sender's domain or shares its registrable domain; otherwise the
    sender."""
    sender, reply_to = email.from_address, email.reply_to_address
    if not reply_to or reply_to == sender:
        return Recipient(sender, email.from_name)
    sender_host, reply_host = sender.rpartition("@")[2], reply_to.rpartition("@")[2]
    if sender_host == reply_host or registrable_domain(sender_host) == registrable_domain(
        reply_host
    ):
        return Recipient(reply_to, email.reply_to_name)
    note = (
        f"Reply-To {reply_to} is outside the sender's domain ({registrable_domain(sender_host)}): "
        f"answers go to the sender {sender}"
    )
    return Recipient(sender, email.from_name, note)


def dmarc_failure(email: ParsedEmail, trusted_authserv_id: str) -> str | None:
    """Why the email failed DMARC according to our own receiving server, or None.

    Only Authentication-Results headers whose authserv-id is the one configured are believed (anyone
    can write the header; our server adds its own on top); with no id configured, none is.
    """
    trusted = (trusted_authserv_id or "").strip().lower()
    if not trusted:
        return None
    for value in email.authentication_results:
        text = _COMMENT.sub(" ", value)
        authserv_id = text.split(";", 1)[0].strip().split()
        if not authserv_id or authserv_id[0].lower() != trusted:
            continue
        for result in _DMARC.findall(text):
            if result.lower() == "fail":
                return f"DMARC {result.lower()} (Authentication-Results from {trusted})"
    return None


ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"  # RFC 5322 atext, as a regex character class body
# dot-atom local part @ dot-separated host name labels (ASCII): an addr-spec that parses to exactly
# itself
PLAIN_ADDRESS = re.compile(rf"[{ATEXT}]+(?:\.[{ATEXT}]+)*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*")


def valid_recipient(address: str) -> str:
    """The address if it is exactly one parsed addr-spec (no name, no list, no line break); else
    ValueError."""
    value = address or ""
    if not value or value != value.strip() or any(c in value for c in '\r\n\t ,;<>"()'):
        raise ValueError(f"not a single email address: {value!r}")
    # the usual shape, which the parser below always takes as it is
    if PLAIN_ADDRESS.fullmatch(value):
        return value
    try:
        parsed = Address(addr_spec=value)
    except Exception as exc:  # the header parser refuses it
        raise ValueError(f"not a valid email address: {value!r}") from exc
    if parsed.addr_spec != value or not parsed.domain or not parsed.username:
        raise ValueError(f"not a valid email address: {value!r}")
    return value


def unanswerable(address: str) -> str | None:
    """Why no mail can be addressed to this address as it stands, or None when it can."""
    try:
        valid_recipient(address)
    except ValueError as exc:
        return str(exc)
    return None
