"""Outgoing mail: signed Message-IDs, reply texts from templates (text and HTML), safe headers."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import re
import secrets
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from triage.catalogue import BY_SLUG, Category, Family
from triage.classifier.cleaning import clean_subject
from triage.mail.bounded_cache import bounded_cache
from triage.mail.charsets import has_garbling
from triage.mail.feedback_links import FeedbackLinks
from triage.mail.names import greeting_name
from triage.mail.parse import single_line
from triage.mail.recipients import ATEXT, valid_recipient
from triage.orm import MAX_KEY, format_reference, utcnow

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "mail"
# templates are read once (auto_reload off): no file check on every email
_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    autoescape=False,  # noqa: S701 — plain text mail
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_HTML_ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    undefined=StrictUndefined,
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
_OUR_ID = re.compile(r"^<imi\.(\d+)\.([0-9a-f]{16})\.([0-9a-f]{20})@")
# a msg-id we write back as-is: dot-atom-text (or a domain literal) on each side of one @,
# printable ASCII only
_WRITABLE_ID = re.compile(rf"<[{ATEXT}.]+@(?:[{ATEXT}.]+|\[[\x21-\x5a\x5e-\x7e]*\])>")
_MSGID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_FOLD_AT = 78
MAX_REFERENCES = 20
_GENERATED_ID_DOMAIN = (
    "@no-message-id.invalid>"  # our stand-in for mail that had none: the centre never saw it
)

AUTO_REPLIED = "auto-replied"
AUTO_GENERATED = "auto-generated"


class _OutgoingPolicy(Compat32):
    """SMTP policy (CRLF, 7-bit) writing msg-id headers whole: folded between ids, never encoded.

    A plain ASCII Subject is folded at its spaces too: the standard folder can move all of it to a
    continuation line ("Subject:" then " [IMI-000001] ..."), which some clients show with a leading
    space. It is the compat32 policy: header values are stored as given instead of being parsed into
    header objects on every assignment and again when written, which was most of the cost of an
    outgoing email. Every value set here is made safe first (single_line, formataddr,
    valid_recipient, writable_id).
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        text = str(value)
        if len(name) + 2 + len(text) <= _FOLD_AT and text.isascii() and text.isprintable():
            return (
                f"{name}: {text}{self.linesep}"  # a short plain header: nothing to fold or encode
            )
        if name.lower() in _MSGID_HEADERS:
            return self._fold_at(name, text.split())
        if name.lower() == "subject" and text.isascii() and text.isprintable() and "=?" not in text:
            return self._fold_at(name, text.split(" "))
        folded: str = super()._fold(name, value, sanitize)  # type: ignore[misc]
        return folded

    def _fold_at(self, name: str, tokens: list[str]) -> str:
        """The header, tokens joined by spaces, a line break before a token passing 78 columns."""
        lines = [f"{name}:"]
        for token in tokens:
            if (
                len(lines[-1]) + 1 + len(token) > _FOLD_AT
                and lines[-1].strip()
                and lines[-1] != f"{name}:"
            ):
                lines.append("")
            lines[-1] += " " + token
        return self.linesep.join(lines) + self.linesep


POLICY = _OutgoingPolicy(linesep="\r\n", mangle_from_=False)


def _sign(secret: str, ticket_id: int, nonce: str) -> str:
    return hmac.new(secret.encode(), f"{ticket_id}.{nonce}".encode(), hashlib.sha256).hexdigest()[
        :20
    ]


def new_message_id(secret: str, ticket_id: int, domain: str) -> str:
    """A Message-ID for our mail on a ticket, carrying an HMAC-signed ticket token."""
    nonce = secrets.token_hex(8)
    return f"<imi.{ticket_id}.{nonce}.{_sign(secret, ticket_id, nonce)}@{domain}>"


def ticket_from_message_id(secret: str, message_id: str) -> int | None:
    """The ticket id in one of our Message-IDs, if its signature is valid."""
    match = _OUR_ID.match(message_id or "")
    if not match or len(match.group(1)) > 10 or int(match.group(1)) > MAX_KEY:
        return None  # no ticket has that id (and no column could hold it)
    ticket_id, nonce, signature = int(match.group(1)), match.group(2), match.group(3)
    return ticket_id if hmac.compare_digest(signature, _sign(secret, ticket_id, nonce)) else None


def writable_id(message_id: str | None) -> str | None:
    """The msg-id if it can go into an outgoing header exactly as it is (and is real), else None."""
    value = (message_id or "").strip()
    if (
        len(value) > 900
        or "=?" in value
        or value.endswith(_GENERATED_ID_DOMAIN)
        or not _WRITABLE_ID.fullmatch(value)
    ):
        return None
    return value


def render(template: str, **context: Any) -> str:
    """Render a plain-text mail template."""
    return _ENV.get_template(template).render(**context)


def reply_subject(ticket_id: int, original: str) -> str:
    """'[IMI-000123] Re: original subject', with reply prefixes and old references folded away.

    A subject that did not decode (replacement characters) is never echoed: "Your enquiry".
    """
    base = "" if has_garbling(original) else clean_subject(single_line(original, 300))
    base = base or "Your enquiry"
    return f"[{format_reference(ticket_id)}] Re: {base}"


def answer_text(category: Category) -> str:
    """A self-serve category's FAQ answer, from its template (ValueError for any other category)."""
    if category.answer_template is None:
        raise ValueError(f"category {category.slug!r} has no automatic answer")
    return render(category.answer_template).strip()


def family_answer_text(family: Family) -> str:
    """A self-serve family's combined answer, its members' answers as steps in FAQ order
    (ValueError for a mixed family)."""
    if family.answer_template is None:
        raise ValueError(f"family {family.value!r} has no combined answer")
    return render(family.answer_template).strip()


def auto_reply_text(
    category: Category,
    reference: str,
    centre_name: str,
    sender_address: str = "",
    family: Family | None = None,
    feedback: FeedbackLinks | None = None,
) -> str:
    """The body of an automatic answer: greeting, the centre-facing answer (the family's combined
    one when `family` is given), how to reach staff, and the "Did this answer your question?"
    links when given."""
    members = [BY_SLUG[slug] for slug in family.members] if family else [category]
    return render(
        "auto_reply.txt",
        answer=family_answer_text(family) if family else answer_text(category),
        invites_reply=any(member.invites_reply for member in members),
        reference=reference,
        name=greeting_name(centre_name, sender_address),
        feedback=feedback,
    )


def acknowledgement_text(
    reference: str,
    centre_name: str,
    sender_address: str = "",
    response_time: str = "within one working day",
) -> str:
    """The body of an acknowledgement for mail routed to staff, saying when staff will answer."""
    return render(
        "acknowledgement.txt",
        reference=reference,
        name=greeting_name(centre_name, sender_address),
        response_time=response_time,
    )


def staff_reply_text(
    *,
    body: str,
    reference: str,
    centre_name: str,
    centre_address: str,
    agent_name: str,
    team_name: str,
    quoted_from: str = "",
    quoted_at: datetime | None = None,
    quoted_text: str = "",
) -> str:
    """A staff reply: greeting, the agent's text, their name and team once, the centre quoted."""
    text = body.strip().replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    has_greeting = bool(lines) and bool(_GREETING.match(lines[0]))
    tail = [ln.strip().lower() for ln in lines[-4:]]
    has_closing = any(
        len(ln) <= 40 and _CLOSING.match(ln) for ln in tail
    )  # "Kind regards,", "Thanks again, Sam"
    agent = single_line(agent_name, 200)
    signature = [] if has_closing else ["Kind regards,"]
    signature += [line for line in (agent, team_name) if line and line.lower() not in tail]
    signed = text + ("\n" if has_closing else "\n\n") + "\n".join(signature) if signature else text
    quote = "\n".join(
        "> " + ln if ln.strip() else ">" for ln in quoted_text.strip().splitlines()[:200]
    )
    return render(
        "staff_reply.txt",
        body=signed,
        greet=not has_greeting,
        reference=reference,
        name=greeting_name(centre_name, centre_address),
        quoted_from=single_line(quoted_from, 300),
        quoted_at=_uk_clock(quoted_at),
        quote=quote,
    )


_UK = ZoneInfo("Europe/London")


def _uk_clock(when: datetime | None) -> str:
    """A stored UTC time as a centre in the UK reads it: "07 Dec 2026 at 14:05 GMT" (or BST)."""
    if when is None:
        return ""
    local = (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(_UK)
    return f"{local.strftime('%d %b %Y at %H:%M')} {local.tzname()}"


_GREETING = re.compile(r"^\s*(dear|hi|hello|hey|good (morning|afternoon|evening))\b", re.IGNORECASE)
_CLOSING = re.compile(
    r"^(kind regards|best regards|warm regards|regards|best wishes|many thanks|thanks|thank you|"
    r"yours sincerely|yours faithfully|all the best|cheers)\b[,.!]?",
    re.IGNORECASE,
)


# --- the HTML alternative: the same text, as simple accessible HTML ------------------------------

_NUMBERED = re.compile(r"^\s*(\d{1,3})[.)]\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*\u2022]\s+(.*)$")
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")
_CHUNK_BREAK = re.compile(r"\n[ \t]*\n")  # a blank line


def _chunks(text: str) -> list[str]:
    """A plain-text body split at its blank lines (no block spans one)."""
    return _CHUNK_BREAK.split(text.replace("\r\n", "\n").strip("\n"))


MAX_QUOTE_DEPTH = 8  # quotations nested deeper are shown flattened at this depth
_QUOTE_MARK = re.compile(r"^\s*> ?")
_QUOTE_MARKS = re.compile(r"^(?:\s*>)+ ?")


def blocks(text: str, depth: int = 0) -> list[dict[str, Any]]:
    """A plain-text body's paragraphs as blocks: paragraph, numbered or bullet list, quotation.

    Quotations nest MAX_QUOTE_DEPTH deep at most: deeper lines lose their remaining '>' markers
    (400 nested markers once made rendering fail with RecursionError).
    """
    result: list[dict[str, Any]] = []
    for chunk in _chunks(text):
        lines = [ln.rstrip() for ln in chunk.split("\n") if ln.strip()]
        # a chunk may hold "On ... wrote:" and the quotation right under it: quoted runs are blocks
        # of their own
        for quoted, run in itertools.groupby(lines, key=lambda ln: ln.lstrip().startswith(">")):
            result.append(_block(list(run), quoted, depth))
    return result


def _block(lines: list[str], quoted: bool, depth: int = 0) -> dict[str, Any]:
    if quoted and depth >= MAX_QUOTE_DEPTH:
        lines = [text for text in (_QUOTE_MARKS.sub("", ln) for ln in lines) if text.strip()]
        quoted = False
    if quoted:
        return {
            "kind": "quote",
            "blocks": blocks("\n".join(_QUOTE_MARK.sub("", ln) for ln in lines), depth + 1),
        }
    numbered = [m for m in map(_NUMBERED.match, lines) if m]
    if len(numbered) == len(lines):
        return {
            "kind": "ol",
            "start": int(numbered[0].group(1)),
            "items": [m.group(2) for m in numbered],
        }
    bullets = [m for m in map(_BULLET.match, lines) if m]
    if len(bullets) == len(lines):
        return {"kind": "ul", "items": [m.group(1) for m in bullets]}
    return {"kind": "p", "lines": lines}


# the answers' lines and paragraphs recur in every reply; a centre's long quoted text does not, so
# long keys are not kept and each cache holds at most ~2 MB of text
MAX_CACHED_CHARS = 1_000_000
MAX_CACHED_KEY = 4_000


@bounded_cache(MAX_CACHED_CHARS, MAX_CACHED_KEY)
def _linked(text: str) -> Markup:
    """Escape a line of text and make its web addresses links."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last : match.start()]))
        url = match.group(0)
        out.append(Markup('<a href="{0}" style="color:#0b5394;">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


_HTML_ENV.globals["linked"] = _linked


def html_body(text: str, title: str) -> str:
    """The text/html alternative of a plain-text body: same words, inline CSS, no images."""
    body = Markup("").join(_chunk_html(chunk) for chunk in _chunks(text))
    return _HTML_ENV.get_template("layout.html").render(body=body, title=title)


@bounded_cache(MAX_CACHED_CHARS, MAX_CACHED_KEY)
def _chunk_html(chunk: str) -> Markup:
    """One paragraph-separated chunk of a body as HTML blocks."""
    macros = _HTML_ENV.get_template("blocks.html").module
    html: Markup = macros.render(blocks(chunk))  # type: ignore[attr-defined]
    return html  # a macro of an autoescaping template: escaped Markup already


# --- the message ---------------------------------------------------------------------------------


def build(
    *,
    message_id: str,
    from_name: str,
    from_address: str,
    to: str,
    subject: str,
    body: str,
    in_reply_to: str | None,
    references: list[str],
    auto_submitted: str | None,
) -> Message:
    """An outgoing message (text/plain with an HTML alternative); inbound values made single-line.

    Msg-ids copied from inbound mail are kept only when they can be written as they are; the
    recipient must be one parsed address (ValueError otherwise), so nothing an email contains can
    add a recipient or header.
    """
    msg, content_type = _bare_multipart()
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(utcnow())
    msg["From"] = formataddr(
        (single_line(from_name, 200), single_line(from_address, 254)), charset="utf-8"
    )
    msg["To"] = valid_recipient(to)
    title = single_line(subject)
    msg["Subject"] = _subject(title)  # type: ignore[assignment]  # compat32 folds a Header itself
    _add_thread_headers(msg, in_reply_to, references)
    if auto_submitted:
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = content_type
    msg.attach(_text_part(body, "plain"))
    msg.attach(_text_part(html_body(body, title), "html"))
    return msg


def _bare_multipart() -> tuple[MIMEMultipart, str]:
    """An empty multipart/alternative without its MIME headers, and its Content-Type value.

    Those headers are written after the addressing ones, as mail clients do. "=_" cannot occur in
    quoted-printable text (a literal "=" is written "=3D"), so no part can hold the boundary and
    the generator need not search the parts for one that fits.
    """
    msg = MIMEMultipart("alternative", boundary=f"=_imi.{secrets.token_hex(12)}", policy=POLICY)
    content_type = msg["Content-Type"]
    del msg["MIME-Version"], msg["Content-Type"]
    return msg, content_type


def _subject(title: str) -> str | Header:
    """A Subject value: the title if ASCII, else a Header the policy writes as encoded words."""
    return title if title.isascii() else Header(title, "utf-8", header_name="Subject")


def _add_thread_headers(msg: Message, in_reply_to: str | None, references: list[str]) -> None:
    """In-Reply-To and References, with only the msg-ids that can be written as they are."""
    parent = writable_id(in_reply_to)
    if parent:
        msg["In-Reply-To"] = parent
    refs = list(dict.fromkeys(r for r in (writable_id(r) for r in references) if r))
    if len(refs) > MAX_REFERENCES:
        # keep the thread's first message and the newest ones (RFC 5322 3.6.4)
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    if refs:
        msg["References"] = " ".join(refs)


def _text_part(text: str, subtype: str) -> Message:
    """A UTF-8 text part, quoted-printable (lines of at most 76 characters), ending in a newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    part = MIMENonMultipart("text", subtype, charset="utf-8", policy=POLICY)
    del part["MIME-Version"]
    part["Content-Transfer-Encoding"] = "quoted-printable"
    encoded = binascii.b2a_qp(
        (text if text.endswith("\n") else text + "\n").encode("utf-8"), istext=True
    )
    part.set_payload(encoded.decode("ascii"))
    return part


def to_bytes(msg: Message) -> bytes:
    """The message as it goes on the wire: CRLF line ends, 7-bit, msg-ids unfolded and unencoded.

    A message made by `build` (a multipart of text parts with their boundary set) is written
    directly, byte for byte what the standard generator writes for it, without its per-line writes
    and buffer copies.
    """
    boundary = msg.get_boundary() if msg.is_multipart() else None
    parts = _plain_leaves(msg)
    if not boundary or msg.preamble is not None or msg.epilogue is not None or parts is None:
        return msg.as_bytes(policy=POLICY)
    nl = POLICY.linesep
    out = [_headers(msg)]
    for part in parts:
        payload = cast(str, part.get_payload())  # _plain_leaf checked it is text
        out += [f"--{boundary}{nl}", _headers(part), _crlf(payload), nl]
    out.append(f"--{boundary}--{nl}")
    return "".join(out).encode("ascii")


def _plain_leaves(msg: Message) -> list[Message] | None:
    """The parts of a multipart if every one is a plain leaf (as `build` makes them), else None."""
    parts = msg.get_payload()
    if not isinstance(parts, list):
        return None
    leaves = [part for part in parts if isinstance(part, Message) and _plain_leaf(part)]
    return leaves if len(leaves) == len(parts) else None


def _plain_leaf(part: Message) -> bool:
    """A single part whose payload is ASCII text ending in a newline (as `_text_part` makes it)."""
    payload = part.get_payload()
    return (
        not part.is_multipart()
        and isinstance(payload, str)
        and payload.isascii()
        and payload.endswith("\n")
        and part.preamble is None
        and part.epilogue is None
    )


def _headers(msg: Message) -> str:
    return (
        "".join(POLICY.fold_binary(name, value).decode("ascii") for name, value in msg.raw_items())
        + POLICY.linesep
    )


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", POLICY.linesep)
