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
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from typing import Any, cast

from triage.classifier.cleaning import (
    html_to_text,
    looks_like_html,
    visible_html,
    visible_html_to_text,
)
from triage.mail import parts as shown_parts
from triage.mail.charsets import (
    DecodeBudget,
    decode_header_text,
    decode_text,
    has_garbling,
    header_parameter,
)
from triage.mail.domains import address_domain
from triage.mail.mailbox import Mailbox, address_like, decode_words, read_mailboxes

MAX_PARTS = 200
MAX_DEPTH = 20
MAX_ATTACHED_DEPTH = 3  # attached messages read inside attached messages; deeper ones kept as .eml
# visible HTML converted to text per email: its cost grows with its tags (~8 us each) and, far
# less, its characters; 10,000 tags take ~0.08 s of CPU
MAX_SHOWN_HTML_TAGS = 10_000
MAX_SHOWN_HTML = 1_000_000  # characters
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
    try:  # decoded text (the usual case) has no surrogates, so strict UTF-8 takes it as it is
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return value.replace("\x00", "") if "\x00" in value else value
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


_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?([A-Za-z0-9._:-]{1,40})", re.I)


def _charset(part: Message) -> str | None:
    """The charset label a part declares (an HTML part may declare it in a <meta> tag)."""
    try:
        label = part.get_content_charset()
    except Exception:  # a parameter the standard library cannot read
        label = None
    return single_line(label, 64) if label else None


def _decode_part(
    part: Message, payload: bytes | None = None, budget: DecodeBudget | None = None
) -> str:
    """A text part's body as a mail client reads it (see charsets.decode_text)."""
    data = _payload_bytes(part) if payload is None else payload
    label = _charset(part)
    if label is None and part.get_content_subtype() == "html":
        meta = _META_CHARSET.search(data[:4096])
        label = meta.group(1).decode("ascii") if meta else None
    return decode_text(data, label, budget)


def _body_charset(msg: Message) -> str | None:
    """The charset of the first text part that declares one: raw 8-bit headers may use it too."""
    for part in itertools.islice(_walk(msg), 20):
        if part.get_content_maintype() == "text" and (label := _charset(part)):
            return label
    return None


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


def _message(
    raw: bytes, start: int = 0, end: int | None = None, depth: int = 0, headers_only: bool = False
) -> EmailMessage:
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
    if headers_only:
        return msg
    boundary = msg.get_boundary() if msg.get_content_maintype() == "multipart" else None
    if boundary and depth < MAX_DEPTH:
        delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
        parts = _split_parts(raw, body_start, end, delimiter)
        if parts:  # else the boundary never appears: the body stays one payload, read as text
            children = [
                _message(raw, part_start, part_end, depth + 1) for part_start, part_end in parts
            ]
            if msg.get_content_subtype() == "digest":
                for child in children:  # RFC 2046 5.1.5: a digest's parts are messages by default
                    child.set_default_type("message/rfc822")
            msg.set_payload(list[Message | str](children))
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
    text = _text(contents.readable(), html)
    return ParsedEmail(
        message_id=message_id,
        from_address=sender.address,
        from_name=single_line(_readable_name(msg, sender.name, sender.address), 200),
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
    fallback = _body_charset(msg) if any(not v.isascii() for _k, v in msg.raw_items()) else None
    for key in _DECODED:
        if key in headers:
            headers[key] = _readable_header(msg, key, fallback)
    return headers


def _readable_header(msg: Message, name: str, fallback: str | None = None) -> str:
    """A header people read, decoded as mail clients do (charsets.decode_header_text).

    Address headers keep the standard reading (it quotes a decoded name holding a comma) unless
    that reading is garbled.
    """
    if name in _ADDRESS_HEADERS:
        standard = _header(msg, name)
        if not has_garbling(standard):
            return standard
    return _header_as_written(msg, name, fallback)


def _header_as_written(msg: Message, name: str, fallback: str | None = None) -> str:
    """A header's text as written (comments kept), its encoded words and 8-bit bytes decoded."""
    raw = _raw_header(msg, name)
    try:
        return single_line(decode_header_text(raw[: 2 * MAX_HEADER_FIELD], fallback))
    except Exception:  # the standard reading never fails
        return _header(msg, name)


def _readable_name(msg: Message, name: str, address: str) -> str:
    """The sender's display name, re-read when the standard decoder garbled it, or taken from a
    comment ("marc@example.com (Marc Smith)") when the address has no name."""
    if name and not has_garbling(name) and "=?" not in name:
        return name
    raw_name, raw_address = parseaddr(re.sub(r"\r?\n[ \t]", " ", _raw_header(msg, "from")))
    if not raw_name or raw_address.lower() != address:
        return name
    return decode_header_text(raw_name, _body_charset(msg))


def _message_id(raw: bytes, headers: dict[str, str]) -> tuple[str, bool]:
    """(Message-ID, whether it was made up): the first msg-id token, else one from a hash."""
    message_id = next(iter(message_ids(headers.get("message-id", ""))), "")
    if message_id:
        return message_id, False
    return _hashed_message_id(raw), True


def _hashed_message_id(raw: bytes) -> str:
    """The Message-ID given to mail that has none: made from the SHA-256 of its bytes."""
    return f"<sha256.{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid>"


def _text(shown: list[str], html: str | None) -> str:
    """What the parts show that is not blank, or the HTML's text when they show nothing."""
    text = storable("\n".join(part for part in shown if part.strip()))
    if not text.strip() and html:
        return html_to_text(html)
    return text


_TAG_START = re.compile(r"<[A-Za-z/!?]")
_ATTACHED_MESSAGES = frozenset({"message/rfc822", "message/global"})
_SHOWN_TEXT = frozenset({"text/plain", "text/html"})


@dataclass
class _Budget:
    """What is left of an email's allowance of parts read and of HTML converted to text."""

    parts: int = MAX_PARTS
    html: int = MAX_SHOWN_HTML
    html_tags: int = MAX_SHOWN_HTML_TAGS
    decoding: DecodeBudget = field(default_factory=DecodeBudget)

    def html_cut(self, visible: str) -> int:
        """How much of some visible HTML the budget converts (all of it: len), spending that."""
        cut = min(len(visible), self.html)
        tags = itertools.islice(_TAG_START.finditer(visible, 0, cut), self.html_tags + 1)
        starts = [match.start() for match in tags]
        if len(starts) > self.html_tags:
            cut = starts[-1]
        self.html -= cut
        self.html_tags -= min(len(starts), self.html_tags)
        return cut


@dataclass
class _Contents:
    """What the parts of a message hold: text, HTML, attachments, and what reports say."""

    html_parts: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)  # what staff read, in the order of the parts
    # named text parts not marked as attachments: shown when no other part shows text
    inline_files: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)  # Message-IDs a report or bounce is about
    is_report: bool = False  # a delivery status report (bounce)
    report_type: str = ""  # the first multipart/report's report-type
    budget: _Budget = field(default_factory=_Budget)
    attached_depth: int = 0  # how many attached messages this one is inside

    @classmethod
    def of(cls, msg: Message, budget: _Budget | None = None, attached_depth: int = 0) -> _Contents:
        """The contents of a message's first MAX_PARTS parts, depth first."""
        contents = cls(budget=budget or _Budget(), attached_depth=attached_depth)
        contents.add(msg)
        return contents

    def add(
        self, part: Message, depth: int = 0, show: bool = True, in_report: bool = False
    ) -> None:
        """Take in one part: what a report says, an attached message, or a leaf's text or file.

        `show` is False for the alternatives of a multipart/alternative that are not shown.
        """
        if self.budget.parts <= 0:
            return
        self.budget.parts -= 1
        ctype = part.get_content_type()
        self._note_report(part, ctype)
        if ctype in _REPORT_PARTS:  # an MDN or feedback report names the message it is about
            self.bounced += message_ids(_original_message_id(part))
        elif ctype == "text/rfc822-headers" or (in_report and ctype in _ATTACHED_MESSAGES):
            self.bounced += message_ids(_embedded_message_id(part))
        elif ctype in _ATTACHED_MESSAGES or _is_eml_file(part, ctype):
            self.bounced += message_ids(_embedded_message_id(part))
            self._add_attached(part, show)
        elif part.is_multipart():
            children = _children(part)
            chosen = _alternative(children) if ctype == "multipart/alternative" else None
            for child in children if depth < MAX_DEPTH else []:
                visible = show and (chosen is None or child is chosen)
                self.add(child, depth + 1, visible, in_report or ctype == "multipart/report")
        elif part.get_content_maintype() == "multipart":  # its boundary never appears
            self._add_text(part, ctype, show)
        else:
            self._add_leaf(part, ctype, show)

    def readable(self) -> list[str]:
        """The text pieces staff read: the shown parts, else the named inline text parts."""
        return self.shown if any(piece.strip() for piece in self.shown) else self.inline_files

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

    def _add_leaf(self, part: Message, ctype: str, show: bool) -> None:
        """An attachment (named, attached, or not plain text or HTML), else the text it shows."""
        data, uu_name = _leaf_bytes(part)
        filename = _filename(part) or uu_name
        if part.get_content_disposition() == "attachment" or filename or ctype not in _SHOWN_TEXT:
            name = single_line(filename or shown_parts.unnamed_part_name(ctype), 255)
            self.attachments.append(ParsedAttachment(name, ctype, data))
            inline = part.get_content_disposition() != "attachment" and not uu_name
            if ctype == "text/plain" and inline and show:
                self.inline_files.append(_decode_part(part, data, self.budget.decoding))
        else:
            self._add_text(part, ctype, show, data)

    def _add_text(self, part: Message, ctype: str, show: bool, data: bytes | None = None) -> None:
        """A text or HTML body: kept, and shown (HTML as its text) when its alternative is."""
        text = _decode_part(part, data, self.budget.decoding)
        if ctype == "text/html" or (ctype != "text/plain" and looks_like_html(text)):
            if self.attached_depth == 0:
                self.html_parts.append(text)
            if show:
                self.shown.append(self._html_text(text, part, data))
        elif show:
            text, files = shown_parts.uu_blocks(text)
            self.attachments += [
                ParsedAttachment(single_line(f.name, 255), "application/octet-stream", f.data)
                for f in files
            ]
            self.shown.append(text)

    def _html_text(self, html: str, part: Message, data: bytes | None) -> str:
        """An HTML part's text, whole up to the email's HTML budget; past it, cut, said so, and the
        original kept as an attachment."""
        visible = visible_html(html)
        shown = self.budget.html_cut(visible)
        if shown == len(visible):
            return visible_html_to_text(visible)
        name = f"message-{len(self.attachments) + 1}.html"
        original = _payload_bytes(part) if data is None else data
        self.attachments.append(ParsedAttachment(name, "text/html", original))
        text = visible_html_to_text(visible[:shown]) if shown else ""
        return text + shown_parts.html_cut_note(shown, len(visible), name)

    def _add_attached(self, part: Message, show: bool) -> None:
        """An attached message: kept as an .eml file, its text and files read as a part of this
        one (up to MAX_ATTACHED_DEPTH messages deep)."""
        data = _payload_bytes(part)
        if not data.strip():
            return
        readable = self.attached_depth < MAX_ATTACHED_DEPTH
        try:  # some clients put a blank line before the attached message's headers
            inner = _message(data.lstrip(b"\r\n"), headers_only=not readable)
        except Exception:  # an attached message we cannot read is still kept as a file
            inner = None
        fallback = _body_charset(inner) if inner is not None else None
        headers = {
            name: _header_as_written(inner, name.lower(), fallback)
            for name in ("From", "Date", "Subject", "To", "Cc")
            if inner is not None
        }
        name = _filename(part) or shown_parts.eml_name(headers.get("Subject", ""))
        name = single_line(name, 255)
        self.attachments.append(ParsedAttachment(name, "message/rfc822", data))
        if inner is None or not inner.keys() or not readable:
            return
        contents = _Contents.of(inner, self.budget, self.attached_depth + 1)
        self.attachments += contents.attachments
        if show:
            text = "\n".join(piece for piece in contents.readable() if piece.strip())
            self.shown.append(shown_parts.attached_block(headers, text))


_EML_FILE_TYPES = frozenset({"application/octet-stream", "text/plain", "application/eml"})


def _is_eml_file(part: Message, ctype: str) -> bool:
    """True for a message attached as a file ("name.eml" or "Mime.822" as octet-stream or text)."""
    if ctype not in _EML_FILE_TYPES or part.is_multipart():
        return False
    return str(part.get_filename() or "").lower().endswith((".eml", ".822"))  # GroupWise: Mime.822


def _filename(part: Message) -> str:
    """A part's file name; re-read from the raw headers (charset supersets, encoded words, 8-bit
    bytes) when the standard reading is garbled."""
    try:
        name = part.get_filename() or ""
    except Exception:  # a parameter the standard library cannot read
        name = ""
    if not has_garbling(name) and "=?" not in name:
        return name
    fallback = _charset(part)
    for header, params in (("content-disposition", ("filename",)), ("content-type", ("name",))):
        found = header_parameter(_raw_header(part, header), params, fallback)
        if found and not has_garbling(found):
            return found
    return storable(name)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [sub for sub in payload if isinstance(sub, Message)] if isinstance(payload, list) else []


def _alternative(children: list[Message]) -> Message | None:
    """The alternative shown: plain text with words, else the last HTML (or multipart) one."""
    for child in children:
        if (
            child.get_content_type() == "text/plain"
            and child.get_content_disposition() != "attachment"
            and _payload_bytes(child).strip()
        ):
            return child
    rich = [c for c in children if c.get_content_type() == "text/html" or c.is_multipart()]
    return rich[-1] if rich else (children[0] if children else None)


def _leaf_bytes(part: Message) -> tuple[bytes, str]:
    """(a leaf's body with its transfer encoding undone, the name a uuencode begin line gives).

    Uuencoded bodies are decoded with or without their begin line (the standard library keeps
    them undecoded without one).
    """
    encoding = str(part.get("content-transfer-encoding", "") or "").strip().lower()
    if encoding not in shown_parts.UU_ENCODINGS:
        return _payload_bytes(part), ""
    payload = part.get_payload()
    raw = payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""
    decoded = shown_parts.uudecode(raw)
    return decoded if decoded is not None else (raw, "")


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
