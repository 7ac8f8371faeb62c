"""Parse raw RFC 822 bytes with the standard library into what the service needs, never raising on odd mail."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from triage.classifier.cleaning import html_to_text

MAX_PARTS = 200
MAX_DEPTH = 20
MAX_BOUNDARY_LINES = 2 * MAX_PARTS + 2  # each part opens with a boundary line; nested ones close too
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # C0, DEL, C1, and Unicode line/paragraph separators
_MSGID = re.compile(r"<[^<>\s]{1,900}>")
_DECODED = ("subject", "from", "to", "cc")  # headers whose encoded words are decoded for display


class UnparseableEmail(ValueError):
    """Bytes that are not an email the service can store (no headers, no sender)."""


@dataclass(frozen=True)
class ParsedAttachment:
    """An attachment's metadata and bytes (bytes are kept, never opened)."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class ParsedEmail:
    """The parts of an inbound email the service uses; header values are single-line and control-free."""

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
    """A header value with CR/LF and control characters removed, safe to copy into an outgoing header."""
    return _CONTROL.sub(" ", storable(str(value or ""))).strip()[:limit]


def message_ids(value: str) -> list[str]:
    """The <message-id> tokens in a header value, in order."""
    return _MSGID.findall(value or "")


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a header the policy refuses (e.g. an encoded CR/LF in an address) must not stop the mail
        raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")  # type: ignore[attr-defined]
        try:
            value = str(make_header(decode_header(str(raw))))
        except Exception:
            value = str(raw)
    return single_line(value)


def _decode_part(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:  # noqa: S110 — unknown charsets and broken encodings fall through to the bytes below
        pass
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _walk(msg: Message, depth: int = 0):  # type: ignore[no-untyped-def]
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
    """Parse raw bytes; raises UnparseableEmail (and nothing else) when there is no usable email in them."""
    try:
        try:
            return _parse(raw)
        except RecursionError:  # MIME nested thousands deep: keep the headers, leave the body to the raw source
            return _parse(raw, headers_only=True)
    except UnparseableEmail:
        raise
    except Exception as exc:  # the standard parser is lenient, but hostile input must never escape as a crash
        raise UnparseableEmail(f"cannot parse: {type(exc).__name__}: {exc}") from exc


def identify(raw: bytes) -> str:
    """The Message-ID raw mail is stored under, from its header block alone (the webhook's quick check).

    Raises UnparseableEmail for headers `parse` would refuse (empty, no headers, no usable From); the
    body is not read, so this costs a fraction of `parse`. Without a Message-ID, the raw bytes' digest.
    """
    if not raw or not raw.strip():
        raise UnparseableEmail("empty message")
    header_end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw[:header_end], headersonly=True)
        if not msg.keys():
            raise UnparseableEmail("no headers found: not an RFC 822 message")
        if not _sender(msg)[1]:
            raise UnparseableEmail("message has no valid From address")
        value = next((v for k, v in msg.raw_items() if k.lower() == "message-id"), "")  # type: ignore[attr-defined]
    except UnparseableEmail:
        raise
    except Exception as exc:  # hostile headers must never escape as a crash
        raise UnparseableEmail(f"cannot parse: {type(exc).__name__}: {exc}") from exc
    found = message_ids(single_line(value))
    return found[0] if found else f"<sha256.{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid>"


def _first_parts(raw: bytes) -> bytes:
    """The raw bytes cut after the first MAX_BOUNDARY_LINES boundary-like lines of a multipart message.

    Only the first MAX_PARTS parts are used, but the standard parser would build every part first: tens
    of thousands of tiny parts in one message cost seconds. The stored raw bytes are never cut.
    """
    header_end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    if b"multipart/" not in raw[:header_end].lower():
        return raw
    index = header_end
    for _ in range(MAX_BOUNDARY_LINES):
        index = raw.find(b"\n--", index + 1)
        if index < 0:
            return raw
    return raw[: index + 1]


def _parse(raw: bytes, headers_only: bool = False) -> ParsedEmail:
    if not raw or not raw.strip():
        raise UnparseableEmail("empty message")
    msg = BytesParser(policy=policy.default).parsebytes(_first_parts(raw), headersonly=headers_only)
    if not msg.keys():
        raise UnparseableEmail("no headers found: not an RFC 822 message")
    headers: dict[str, str] = {}
    for key, value in msg.raw_items():  # type: ignore[attr-defined]
        # raw (still encoded) values are enough for the loop checks; the few shown to people are decoded below
        headers.setdefault(key.lower(), single_line(value))
    for key in _DECODED:
        if key in headers:
            headers[key] = _header(msg, key)
    name, address = _sender(msg)
    if not address:
        raise UnparseableEmail("message has no valid From address")
    message_id = next(iter(message_ids(headers.get("message-id", ""))), "")
    generated = not message_id
    if generated:
        message_id = f"<sha256.{hashlib.sha256(raw).hexdigest()}@no-message-id.invalid>"
    text_parts, html_parts, attachments, bounced, is_report = [], [], [], [], False
    for count, part in enumerate(_walk(msg) if not headers_only else ()):
        if count >= MAX_PARTS:
            break
        ctype = part.get_content_type()
        if ctype == "multipart/report" and "delivery-status" in str(part.get_param("report-type") or ""):
            is_report = True
        if ctype in {"message/delivery-status"}:
            is_report = True
        if ctype in {"message/rfc822", "text/rfc822-headers"}:
            bounced += message_ids(_embedded_message_id(part))
            continue
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            data = part.get_payload(decode=True) or b""
            attachments.append(ParsedAttachment(single_line(filename or "attachment", 255), ctype, data))
        elif ctype == "text/plain":
            text_parts.append(_decode_part(part))
        elif ctype == "text/html":
            html_parts.append(_decode_part(part))
    # NUL and undecodable bytes are legal in a MIME body, but no PostgreSQL text column can hold them
    html = storable("\n".join(html_parts)) if html_parts else None
    text = storable("\n".join(p for p in text_parts if p.strip()))
    if not text.strip() and html:
        text = html_to_text(html)
    return ParsedEmail(
        message_id=message_id,
        from_address=address,
        from_name=single_line(name, 200),
        to_addresses=_addresses(headers),
        subject=headers.get("subject", ""),
        in_reply_to=next(iter(message_ids(headers.get("in-reply-to", ""))), None),
        references=message_ids(headers.get("references", "")),
        text=text,
        html=html,
        headers=headers,
        attachments=attachments,
        is_delivery_report=is_report,
        bounced_message_ids=bounced,
        generated_message_id=generated,
        reply_to_address=_sender(msg, "reply-to")[1] if "reply-to" in headers else "",
    )


def _sender(msg: Message, header: str = "from") -> tuple[str, str]:
    """(display name, lower-cased address) of the first usable address in a header, or ("", "")."""
    raw_value = _header(msg, header)
    try:
        addresses = msg[header].addresses if msg[header] is not None else ()
        if addresses:
            first: Address = addresses[0]
            address = single_line(first.addr_spec.lower(), 254)
            if _can_answer(address):
                return first.display_name, address
    except Exception:  # noqa: S110 — fall back to the lenient parser below
        pass
    name, address = parseaddr(raw_value)
    address = single_line(address.lower(), 254)
    return (name, address) if _can_answer(address) else (name, "")


def _addresses(headers: dict[str, str]) -> list[str]:
    """The To and Cc addresses, each a clean single line."""
    pairs = getaddresses([headers.get("to", ""), headers.get("cc", "")])
    return [single_line(address, 254) for _name, address in pairs if "@" in address]


def _can_answer(address: str) -> bool:
    """True if an answer could be addressed to it: a local part and a domain our own mail headers accept."""
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        return False
    try:
        return Address(addr_spec=address).addr_spec != ""
    except Exception:  # the header parser refuses it: no reply could carry it in To
        return False


def _embedded_message_id(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return str(payload[0].get("message-id", ""))
    if isinstance(payload, str):
        match = re.search(r"^message-id:\s*(<[^>]+>)", payload, re.IGNORECASE | re.MULTILINE)
        return match.group(1) if match else ""
    return ""
