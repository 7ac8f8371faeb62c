"""Parse raw RFC 822 bytes with the standard library into what the service needs.

Odd or hostile mail never makes it raise anything but UnparseableEmail.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses
from functools import lru_cache
from typing import Any, cast

from triage.classifier.cleaning import html_to_text
from triage.mail.domains import address_domain
from triage.mail.mailbox import Mailbox, address_like, decode_words, read_mailboxes

MAX_PARTS = 200
MAX_DEPTH = 20
# Caps applied before the standard parser sees the bytes: its header parser is slow on long values
# (an 80 KB From display name took 10 s, a 9 MB folded Subject minutes), so no header it parses is
# long.
MAX_HEADER_BLOCK = 64 * 1024  # bytes of the top-level header block kept (whole fields, in order)
MAX_HEADERS = 500  # header fields kept from the top-level block
MAX_HEADER_FIELD = 8 * 1024  # characters of one header's value (its start and its end are kept)
MAX_ADDRESS_FIELD = 998  # characters of an address header's value when parsed (one RFC 5322 line)
_ADDRESS_HEADERS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "resent-from",
        "resent-sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "return-path",
    }
)
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029]+"
)  # C0, DEL, C1, and Unicode line/paragraph separators
_MSGID = re.compile(r"<[^<>\s]{1,900}>")
_DECODED = ("subject", "from", "to", "cc")  # headers whose encoded words are decoded for display


class UnparseableEmail(ValueError):
    """Bytes that cannot become a ticket (they are kept, as rejected, when they have headers)."""


class NotAnEmail(UnparseableEmail):
    """Bytes that are not an email at all: empty, or with no header block."""


# headers that make a header block an email's (RFC 5322, 2045, 5321 trace)
_EMAIL_HEADERS = _ADDRESS_HEADERS | {
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "received",
    "mime-version",
    "content-type",
    "delivered-to",
    "resent-date",
}


@dataclass(frozen=True)
class ParsedAttachment:
    """An attachment's metadata and bytes (bytes are kept, never opened)."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class ParsedEmail:
    """The parts of an inbound email the service uses; header values are one line, control-free."""

    message_id: str
    from_address: str
    from_name: str
    to_addresses: list[str]
    subject: str
    in_reply_to: str | None
    references: list[str]
    text: str
    html: str | None
    headers: dict[str, str]
    attachments: list[ParsedAttachment] = field(default_factory=list)
    is_delivery_report: bool = False
    bounced_message_ids: list[str] = field(default_factory=list)
    generated_message_id: bool = False
    reply_to_address: str = ""  # the first valid Reply-To address, if any
    reply_to_name: str = ""
    # multipart/report's report-type: delivery-status, disposition-notification, feedback-report...
    report_type: str = ""
    authentication_results: list[str] = field(
        default_factory=list
    )  # every Authentication-Results header, in order
    address_problem: str = (
        ""  # why From or Reply-To could only be read leniently (e.g. a decoded line break)
    )
    clean_text: str | None = None  # what the centre wrote now, cleaned once by the inbound batch

    @property
    def reply_address(self) -> str:
        """Where answers go: the Reply-To address when there is a valid one, else the sender."""
        return self.reply_to_address or self.from_address

    def header(self, name: str) -> str:
        """A header's value ('' if absent), case-insensitive."""
        return self.headers.get(name.lower(), "")


def storable(value: str) -> str:
    """Text any database can hold: undecodable bytes (surrogate escapes) as U+FFFD, and no NUL."""
    try:
        valid = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        valid = value.encode("utf-8", "replace").decode("utf-8")
    return valid.replace("\x00", "")


def single_line(value: object, limit: int = 998) -> str:
    """A header value without CR/LF or control characters, safe to copy into an outgoing header."""
    return _CONTROL.sub(" ", storable(str(value or ""))).strip()[:limit]


def message_ids(value: str) -> list[str]:
    """The <message-id> tokens in a header value, in order."""
    return _MSGID.findall(value or "")


def shorten(value: str, limit: int) -> str:
    """A value cut to about `limit` characters, keeping its start and end (where an address is)."""
    if len(value) <= limit:
        return value
    half = limit // 2
    return f"{value[:half]} {value[-half:]}"


class _BoundedPolicy(EmailPolicy):
    """policy.default, except that a header is cut to a bounded length before it is parsed.

    A header already parsed is not parsed again (reading one email fetches Content-Type several
    times).
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """Parse a header's value (in any part of the message) only after capping its length."""
        limit = MAX_ADDRESS_FIELD if name.lower() in _ADDRESS_HEADERS else MAX_HEADER_FIELD
        if len(value) > limit:
            value = shorten(value.replace("\r", "").replace("\n", ""), limit)
        return _parsed_header(self, name, value)


@lru_cache(maxsize=512)
def _parsed_header(policy: EmailPolicy, name: str, value: str) -> Any:
    """The standard policy's header object for (name, value); immutable, so one is shared."""
    return EmailPolicy.header_fetch_parse(policy, name, value)


BOUNDED = _BoundedPolicy()


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except (
        Exception
    ):  # a header the policy refuses (e.g. an encoded CR/LF in an address) must not stop the mail
        raw = _raw_header(msg, name)
        try:
            value = str(make_header(decode_header(str(raw))))
        except Exception:
            value = str(raw)
    return single_line(value)


def _payload_bytes(part: Message) -> bytes:
    """A leaf part's body with its transfer encoding undone (b"" for a multipart)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _decode_part(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:  # noqa: S110 — unknown charsets and broken encodings: decode the bytes below
        pass
    payload = _payload_bytes(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, ValueError):  # unknown, or a codec that refuses (idna, a NUL in the name)
        return payload.decode("utf-8", errors="replace")


def _walk(msg: Message, depth: int = 0) -> Iterator[Message]:
    """Depth-first parts, bounded in depth and count; embedded messages are not descended into."""
    yield msg
    if depth >= MAX_DEPTH or not msg.is_multipart() or msg.get_content_maintype() == "message":
        return
    payload = msg.get_payload()
    if not isinstance(payload, list):
        return
    for sub in payload:
        if isinstance(sub, Message):
            yield from _walk(sub, depth + 1)


def parse(raw: bytes) -> ParsedEmail:
    """Parse raw bytes; raises UnparseableEmail (and nothing else) if they hold no usable email."""
    try:
        return _parse(raw)
    except UnparseableEmail:
        raise
    except (
        Exception
    ) as exc:  # the standard parser is lenient, but hostile input must never escape as a crash
        raise UnparseableEmail(f"cannot parse: {type(exc).__name__}: {exc}") from exc


_FIELD_START = re.compile(
    rb"\n(?=[^ \t])"
)  # a line that does not continue (fold) the previous header field


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _split_head(raw: bytes, start: int, end: int) -> tuple[bytes, int]:
    """(header block with its last line ending, where the body starts) of raw[start:end]."""
    blank = _BLANK_LINE.search(raw, start, end)
    if blank is None:
        return raw[start:end], end
    return raw[start : blank.start() + 1], blank.end()


_STRAY_LINE = re.compile(rb"\n(?![ \t]|[!-9;-~]+[ \t]*:|\r?\n|\r?$)")  # no field, no fold
_FIELD_LINE = re.compile(rb"\n[!-9;-~]+[ \t]*:")


def mend_unfolded(head: bytes) -> bytes:
    """A header block whose stray lines (neither a field nor folded) before its last field are
    read as folded: a header line a mailer broke without folding does not end the headers."""
    if not _STRAY_LINE.search(head):
        return head
    last_field = max((m.start() for m in _FIELD_LINE.finditer(head)), default=-1)
    return _STRAY_LINE.sub(lambda m: b"\n " if m.start() < last_field else m.group(0), head)


def bounded_head(head: bytes) -> bytes:
    """A header block within MAX_HEADER_BLOCK, MAX_HEADERS and MAX_HEADER_FIELD, else unchanged.

    Over a cap, the fields that fit are kept in order, an over-long one unfolded and cut to its
    start and end (a display name of 80 KB keeps the address after it). Field starts are found by
    one regex scan.
    """
    starts = [0]
    for match in _FIELD_START.finditer(head):
        starts.append(match.end())
        if len(starts) > MAX_HEADERS:
            break
    ends = [*starts[1:], len(head)] if len(starts) <= MAX_HEADERS else starts[1:]
    fields = [head[start:end] for start, end in zip(starts, ends, strict=False)]
    if (
        len(head) <= MAX_HEADER_BLOCK
        and len(starts) <= MAX_HEADERS
        and max(map(len, fields)) <= MAX_HEADER_FIELD
    ):
        return head
    kept: list[bytes] = []
    size = 0
    for field_bytes in fields[:MAX_HEADERS]:
        name, colon, value = field_bytes.partition(b":")
        value = value.replace(b"\r", b"").replace(b"\n", b"")
        if len(value) > MAX_HEADER_FIELD:
            value = value[: MAX_HEADER_FIELD // 2] + b" " + value[-(MAX_HEADER_FIELD // 2) :]
        line = name + colon + value + b"\r\n"
        if size + len(line) > MAX_HEADER_BLOCK:
            break
        kept.append(line)
        size += len(line)
    return b"".join(kept)


def identify(raw: bytes) -> str:
    """The Message-ID raw mail is stored under, from its header block alone (the webhook's check).

    Raises NotAnEmail for bytes with no header block, UnparseableEmail for a header block with no
    email header in it (such mail is kept, as rejected); the sender is not checked (mail with no
    usable sender still becomes a ticket, for a person). The body is not read.
    """
    if not raw or not raw.strip():
        raise NotAnEmail("empty message")
    try:
        head, _body_start = _split_head(raw, 0, len(raw))
        msg = BytesParser(policy=BOUNDED).parsebytes(
            bounded_head(mend_unfolded(head)), headersonly=True
        )
        _check_headers(msg)
        value = _raw_header(msg, "message-id")
    except UnparseableEmail:
        raise
    except Exception as exc:  # hostile headers must never escape as a crash
        raise UnparseableEmail(f"cannot parse: {type(exc).__name__}: {exc}") from exc
    found = message_ids(single_line(value[: 2 * MAX_HEADER_FIELD]))
    return found[0] if found else _hashed_message_id(raw)


def _check_headers(msg: Message) -> None:
    """NotAnEmail when no header was found; UnparseableEmail when none is an email's."""
    names = {key.lower() for key in msg}
    if not names:
        raise NotAnEmail("no headers found: not an RFC 822 message")
    if not names & _EMAIL_HEADERS and not any(n.startswith(("x-", "list-")) for n in names):
        raise UnparseableEmail("no email header (From, To, Subject, Date, Message-ID...) found")


def _message(raw: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> EmailMessage:
    """The message in raw[start:end], built without handing the standard parser any body.

    The standard parser reads bodies a line at a time in Python (millions of short lines cost
    seconds); here it parses only (bounded) header blocks, bodies are located with bytes.find and
    never copied until a leaf part's payload is set, and multipart bodies are split at their
    boundary lines (at most MAX_PARTS parts, MAX_DEPTH levels; deeper content stays an opaque
    payload).
    """
    end = len(raw) if end is None else end
    head, body_start = _split_head(raw, start, end)
    parsed = BytesParser(policy=BOUNDED).parsebytes(
        bounded_head(mend_unfolded(head)), headersonly=True
    )
    msg = cast(EmailMessage, parsed)  # what the policy's message_factory makes
    leftover = (
        msg.get_payload()
    )  # a line that was no header starts the body, as in the standard parser
    boundary = msg.get_boundary() if msg.get_content_maintype() == "multipart" else None
    if boundary and depth < MAX_DEPTH:
        delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
        parts = _split_parts(raw, body_start, end, delimiter)
        msg.set_payload(
            [_message(raw, part_start, part_end, depth + 1) for part_start, part_end in parts]
        )
        return msg
    text = raw[body_start:end].decode("ascii", "surrogateescape")
    if isinstance(leftover, str) and leftover:
        text = leftover + ("\r\n" + text if text else "")
    msg.set_payload(text)
    return msg


def _split_parts(raw: bytes, start: int, end: int, delimiter: bytes) -> list[tuple[int, int]]:
    """(start, end) of each part of the multipart body raw[start:end] (at most MAX_PARTS)."""
    parts: list[tuple[int, int]] = []
    position = _delimiter_line(raw, delimiter, start, end, first=True)
    while position >= 0 and len(parts) < MAX_PARTS:
        line_end = raw.find(b"\n", position, end)
        if line_end < 0 or raw.startswith(b"--", position + len(delimiter)):
            break  # the close delimiter, or a delimiter with nothing after it
        following = _delimiter_line(raw, delimiter, line_end, end)
        part_end = end
        if following >= 0:  # the line break before a delimiter belongs to the delimiter
            part_end = following - (
                2 if raw.startswith(b"\r\n", following - 2) and following - 2 > line_end else 1
            )
        parts.append((line_end + 1, max(line_end + 1, part_end)))
        position = following
    return parts


def _delimiter_line(raw: bytes, delimiter: bytes, start: int, end: int, first: bool = False) -> int:
    """Where the next boundary line (maybe closing, space-padded) in raw[start:end] is, or -1."""
    index = (
        start
        if first and raw.startswith(delimiter, start)
        else _next_candidate(raw, delimiter, start, end)
    )
    while index >= 0:
        line_end = raw.find(b"\n", index, end)
        rest = raw[index + len(delimiter) : line_end if line_end >= 0 else end]
        if not rest.removeprefix(b"--").strip(b" \t\r"):
            return index
        index = _next_candidate(raw, delimiter, index, end)
    return -1


def _next_candidate(raw: bytes, delimiter: bytes, after: int, end: int) -> int:
    found = raw.find(b"\n" + delimiter, after, end)
    return found + 1 if found >= 0 else -1


def _parse(raw: bytes) -> ParsedEmail:
    """The parsed email in raw bytes (UnparseableEmail when there is none)."""
    msg = _message_with_headers(raw)
    headers = _headers(msg)
    sender = _identity(msg)
    message_id, generated = _message_id(raw, headers)
    contents = _Contents.of(msg)
    # NUL and undecodable bytes are legal in a MIME body, but no PostgreSQL text column holds them
    html = storable("\n".join(contents.html_parts)) if contents.html_parts else None
    reply_to = _reply_to(msg)
    text = _text(contents.text_parts, html)
    return ParsedEmail(
        message_id=message_id,
        from_address=sender.address,
        from_name=single_line(sender.name, 200),
        to_addresses=_addresses(headers),
        subject=headers.get("subject", ""),
        # some senders (Python's email package among them) RFC 2047-encode long msg-ids
        in_reply_to=next(iter(message_ids(decode_words(headers.get("in-reply-to", "")))), None),
        references=message_ids(decode_words(headers.get("references", ""))),
        text=text,
        html=html,
        headers=headers,
        attachments=contents.attachments,
        is_delivery_report=contents.is_report,
        bounced_message_ids=contents.bounced,
        generated_message_id=generated,
        reply_to_address=reply_to.address,
        reply_to_name=single_line(reply_to.name, 200),
        report_type=contents.report_type,
        authentication_results=_all_values(msg, "authentication-results")[:20],
        address_problem=single_line(sender.problem or reply_to.problem, 500),
    )


def _message_with_headers(raw: bytes) -> EmailMessage:
    """The message in raw bytes; UnparseableEmail when they are empty or start with no header."""
    if not raw or not raw.strip():
        raise NotAnEmail("empty message")
    msg = _message(raw)
    _check_headers(msg)
    return msg


def _headers(msg: EmailMessage) -> dict[str, str]:
    """The first value of each header by lower-cased name; those shown to people decoded."""
    headers: dict[str, str] = {}
    for key, value in msg.raw_items():
        # raw (still encoded) values are enough for the loop checks
        headers.setdefault(key.lower(), single_line(value[: 2 * MAX_HEADER_FIELD]))
    for key in _DECODED:
        if key in headers:
            headers[key] = _header(msg, key)
    return headers


def _message_id(raw: bytes, headers: dict[str, str]) -> tuple[str, bool]:
    """(Message-ID, whether it was made up): the first msg-id token, else one from a hash."""
    message_id = next(iter(message_ids(headers.get("message-id", ""))), "")
    if message_id:
        return message_id, False
    return _hashed_message_id(raw), True


def _hashed_message_id(raw: bytes) -> str:
    """The Message-ID given to mail that has none: made from the SHA-256 of its bytes."""
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid>"


def _text(text_parts: list[str], html: str | None) -> str:
    """The text/plain parts that are not blank, or the HTML's text when there are none."""
    text = storable("\n".join(part for part in text_parts if part.strip()))
    if not text.strip() and html:
        return html_to_text(html)
    return text


_EMBEDDED_MESSAGES = frozenset({"message/rfc822", "text/rfc822-headers"})


@dataclass
class _Contents:
    """What the parts of a message hold: text, HTML, attachments, and what reports say."""

    text_parts: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)  # Message-IDs a report or bounce is about
    is_report: bool = False  # a delivery status report (bounce)
    report_type: str = ""  # the first multipart/report's report-type

    @classmethod
    def of(cls, msg: Message) -> _Contents:
        """The contents of a message's first MAX_PARTS parts, depth first."""
        contents = cls()
        for part in itertools.islice(_walk(msg), MAX_PARTS):
            contents.add(part)
        return contents

    def add(self, part: Message) -> None:
        """Take in one part: what a report says, or a leaf part's text or attachment."""
        ctype = part.get_content_type()
        self._note_report(part, ctype)
        if ctype in _REPORT_PARTS:  # an MDN or feedback report names the message it is about
            self.bounced += message_ids(_original_message_id(part))
        elif ctype in _EMBEDDED_MESSAGES:
            self.bounced += message_ids(_embedded_message_id(part))
        elif not part.is_multipart():
            self._add_leaf(part, ctype)

    def _note_report(self, part: Message, ctype: str) -> None:
        """Note a delivery status report, and the first report-type of a multipart/report."""
        if ctype == "message/delivery-status":
            self.is_report = True
        if ctype != "multipart/report":
            return
        report_type = part.get_param("report-type")
        if "delivery-status" in str(report_type or ""):
            self.is_report = True
        self.report_type = self.report_type or single_line(report_type or "unknown", 64).lower()

    def _add_leaf(self, part: Message, ctype: str) -> None:
        """An attachment (named, attached, or not text), else the text or HTML body it holds."""
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            name = single_line(filename or "attachment", 255)
            self.attachments.append(ParsedAttachment(name, ctype, _payload_bytes(part)))
        elif ctype == "text/plain":
            self.text_parts.append(_decode_part(part))
        elif ctype == "text/html":
            self.html_parts.append(_decode_part(part))


def _identity(msg: Message) -> Mailbox:
    """Who sent the mail, as a mail server reads it: From, else Sender, else Reply-To.

    The address is the angle-addr (or the bare addr-spec), never a word of the display name. When
    From names no single usable address (missing, repeated, broken), Sender is used, then a
    Reply-To in the From's registrable domain (any, when From names no domain); the problem is
    kept so that a person, not an automatic answer, deals with the mail.
    """
    author, problem = _author(msg)
    if author.address:
        return author
    claimed = {address_domain(a) for a in address_like(_raw_all(msg, "from"))}
    for header, label in (("sender", "Sender"), ("reply-to", "Reply-To")):
        found = _first_usable(msg, header, label)
        if found is None or (
            label == "Reply-To" and claimed - {""} and address_domain(found.address) not in claimed
        ):
            continue
        return Mailbox(
            found.name or author.name, found.address, f"{problem}; address taken from {label}"
        )
    return Mailbox(author.name, "", f"{problem}; no Sender or Reply-To address to use instead")


def _author(msg: Message) -> tuple[Mailbox, str]:
    """The From mailbox (its address '' when unusable) and why it is unusable."""
    values = {" ".join(v.split()) for v in _raw_values(msg, "from")}
    if not values:
        return Mailbox("", ""), "no From header"
    if len(values) > 1:
        return Mailbox("", ""), f"{len(values)} different From headers"
    mailboxes = read_mailboxes(values.pop(), "From")
    usable = [m for m in mailboxes if m.usable]
    if len(usable) > 1:  # RFC 5322 3.6.2: then Sender names who sent it
        sender = _first_usable(msg, "sender", "Sender")
        if sender is not None:
            return sender, ""
        first = usable[0]
        why = f"From names {len(usable)} addresses and there is no Sender"
        return Mailbox(first.name, first.address, first.problem or why), ""
    if usable:
        return usable[0], ""
    first = mailboxes[0] if mailboxes else Mailbox("", "", "From header is empty")
    return Mailbox(first.name, ""), first.problem or "From header has no address that parses"


def _first_usable(msg: Message, header: str, label: str) -> Mailbox | None:
    """The first mailbox with a usable address in the (one) header, or None."""
    values = {" ".join(v.split()) for v in _raw_values(msg, header)}
    if len(values) != 1:
        return None
    return next((m for m in read_mailboxes(values.pop(), label) if m.usable), None)


def _reply_to(msg: Message) -> Mailbox:
    """The first usable Reply-To mailbox; else its name and why it cannot be used."""
    raw = _raw_header(msg, "reply-to")
    if not raw.strip():
        return Mailbox("", "")
    mailboxes = read_mailboxes(raw, "Reply-To")
    usable = next((m for m in mailboxes if m.usable), None)
    if usable is not None:
        return usable
    first = mailboxes[0] if mailboxes else Mailbox("", "")
    why = first.problem or "Reply-To header has no address that parses"
    return Mailbox(first.name, "", why)


def _raw_values(msg: Message, header: str) -> list[str]:
    """Every value of a header (any case) as it came, unparsed."""
    name = header.lower()
    return [str(v) for k, v in msg.raw_items() if k.lower() == name]


def _raw_all(msg: Message, header: str) -> str:
    return " ".join(_raw_values(msg, header))


def _raw_header(msg: Message, header: str) -> str:
    """The first such header (any case) as it came, unparsed ("" if none)."""
    return next(iter(_raw_values(msg, header)), "")


def _all_values(msg: Message, name: str) -> list[str]:
    """Every value of a header that may repeat, each single-line and bounded, in order."""
    return [single_line(v[: 2 * MAX_HEADER_FIELD]) for k, v in msg.raw_items() if k.lower() == name]


def _addresses(headers: dict[str, str]) -> list[str]:
    """The To and Cc addresses, each a clean single line."""
    pairs = getaddresses([headers.get("to", ""), headers.get("cc", "")])
    return [single_line(address, 254) for _name, address in pairs if "@" in address]


_REPORT_PARTS = frozenset(
    {
        "message/disposition-notification",
        "message/global-disposition-notification",
        "message/feedback-report",
    }
)


def _original_message_id(part: Message) -> str:
    """The Original-Message-ID field of a disposition notification (or feedback report) part."""
    payload = part.get_payload()
    fields = (
        payload[0]
        if isinstance(payload, list) and payload and isinstance(payload[0], Message)
        else None
    )
    if fields is not None:
        return str(fields.get("original-message-id", "") or "")
    match = re.search(
        r"^original-message-id:\s*(<[^>]+>)", str(payload or ""), re.IGNORECASE | re.MULTILINE
    )
    return match.group(1) if match else ""


def _embedded_message_id(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return str(payload[0].get("message-id", ""))
    if isinstance(payload, str):
        match = re.search(
            r"^message-id:[ \t]*(<[^<>\s]{1,900}>)", payload, re.IGNORECASE | re.MULTILINE
        )
        return match.group(1) if match else ""
    return ""
